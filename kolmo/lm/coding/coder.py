"""The one language-model coding engine: segments, verification, safe mode and the payload.

Both language-model compressors code token ids through :class:`Coder`, on the decoder's step
schedule (:mod:`kolmo.lm.coding.schedule`), with one rANS coder and one payload layout
(:func:`kolmo.framing.pack_lm_payload`). The input's tokens are cut into *segments*:

``chunks`` (``lm``, :meth:`Coder.compress_chunks`)
    independent pieces of ``segment`` tokens, each restarting its context; equally long chunks are
    grouped (stable order) into batches of at most ``coder_batch`` and coded in lock-step, one rANS
    word stream per group. Several chunks carry a CRC-16 each, so a failure names its chunk.
    Optionally a shared prefix (``prime`` tokens) is coded first, alone, and every chunk reads it
    as context before its own tokens, so a chunk restarts with the text's opening, not with nothing.
``blocks`` (``lm-online``, :meth:`Coder.compress_blocks`)
    the blocks of :class:`kolmo.lm.coding.prequential.Prequential`, coded one after another in one rANS
    stream, with the model learning from each block after it is coded (the decoder replays it).

**Verification** (``verify=True``): the encoder's floats must be the decoder's, and on a GPU they
may not be (kernels picked by shape, workspace or alignment). So the encoder runs the decoder's
schedule of each group or block a second time, teacher-forced with the known tokens, and compares
every token's interval. This is equivalent to decoding it: a decoder finds token ``t`` from a slot
in ``[start_t, start_t + f_t)`` exactly when its table gives ``t`` that same interval (a table's
intervals are disjoint), and its rANS state then updates exactly as the encoder's did, so by
induction every token decodes. A segment that differs anywhere goes to the **safe mode**: its
bytes, deflated, are stored instead (the decoder still trains on a safe block; a safe chunk still
runs in its group, so the others keep the batch shape they were verified with). Learning itself
is not run twice: on a CPU it repeats the same operations in the same order (nor are the mixture's
memories: exact functions of the tokens, replayed in the second run); what a decoder's
floats depend on beyond that is recorded in the payload (:mod:`kolmo.lm.machine`) and checked
before decoding.

A stream decoded where the floats differ anyway fails the coder's end check, a chunk CRC or the
data CRC: :class:`~kolmo.errors.CorruptStreamError`, never wrong bytes.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ... import framing
from ...errors import CorruptStreamError
from .. import machine
from ..scoring.batching import plan_windows
from .rans import BatchDecoder
from .schedule import PRECISION_BITS, decode, intervals, rans_words

LM, SAFE = 0, 1  # segment modes

DIVERGED = ("Either the stream is corrupted, or this machine computes the model's probabilities with other "
            "floats than the machine that encoded it (another GPU model or library version); "
            "diagnose(data) shows where two runs of the coding schedule diverge")


def groups(lengths: Sequence[int], coder_batch: int) -> List[List[int]]:
    """Chunk indices grouped by equal length (in order of first appearance), at most coder_batch each."""
    by_len: dict = {}
    for i, n in enumerate(lengths):
        by_len.setdefault(n, []).append(i)
    out = []
    for idx in by_len.values():
        out += [idx[k:k + coder_batch] for k in range(0, len(idx), coder_batch)]
    return out


def plan_groups(lengths: Sequence[int], coder_batch: int, prime: int = 0) -> List[List[int]]:
    """The coder groups of a payload's segments: with a shared prefix (``prime``), segment 0 alone
    first, then the other segments' :func:`groups`; else :func:`groups` of all."""
    if not prime:
        return groups(lengths, coder_batch)
    return [[0]] + [[i + 1 for i in g] for g in groups(lengths[1:], coder_batch)]


class Coder:
    """Codes a step model's tokens (module docstring). ``model``: a step model of
    :mod:`kolmo.lm.coding.schedule` with ``encode(bytes) -> ids`` and ``decode(ids) -> bytes`` besides."""

    def __init__(self, model, *, window: int, stride: int, kv_cache: str = "dynamic", verify: bool = True,
                 what: str = "lm stream", label: str = "kolmo lm", progress=None, bf16: bool = False):
        self.model, self.window, self.stride = model, window, stride
        self.bf16 = bf16  # the model's products run in bf16 (lm-online's autocast): the record says how
        self.kv_cache, self.verify, self.what = kv_cache, verify, what
        self.label, self.progress = label, progress
        self.safe: List[Tuple[int, int]] = []  # (segment, first differing step) of the last compress

    # -- shared -------------------------------------------------------------------------------------
    def _bar(self, tokens: int, encoding: bool):
        from ... import progress
        total = tokens * (2 if encoding and self.verify else 1)
        return progress.bar(total, f"{self.label}: {'encoding' if encoding else 'decoding'}", "tok", self.progress,
                            min_total=256)

    def _code(self, seqs: np.ndarray, windows, bar) -> Tuple[Tuple[np.ndarray, np.ndarray], np.ndarray]:
        """Intervals of the rows of ``seqs``, and each row's first step that verification saw differ (-1)."""
        got = intervals(self.model, seqs, windows, self.kv_cache, bar)
        bad = np.full(seqs.shape[0], -1)
        if self.verify and got[0].size:
            again = intervals(self.model, seqs, windows, self.kv_cache, bar, again=True)
            differ = (again[0] != got[0]) | (again[1] != got[1])
            rows = np.flatnonzero(differ.any(axis=0))
            bad[rows] = differ[:, rows].argmax(axis=0)
        return got, bad

    def _payload(self, n: int, segment: int, modes: Sequence[int], spelled: Callable[[int], bytes],
                 words: Sequence[np.ndarray], crcs: bool, prime: int = 0) -> bytes:
        safe = tuple(i for i, m in enumerate(modes) if m == SAFE)
        rec = machine.current(self.model.device, self.bf16).to_bytes(framing.PAYLOAD_VERSION)
        crc16 = tuple(framing.crc32(spelled(i)) & 0xFFFF for i in range(len(modes))) if crcs else None
        return framing.pack_lm_payload(framing.LMPayload(rec, n, segment if segment < n - prime else 0, safe,
                                                         tuple(framing.safe_code(spelled(i)) for i in safe), crc16,
                                                         tuple(words), prime))

    def _unpack(self, payload: bytes, length: int, n_groups: Callable) -> Tuple[framing.LMPayload, int]:
        """The payload, checked against this process's floats, and the encoder's thread count."""
        p = framing.unpack_lm_payload(payload, length, n_groups, self.what)
        record = machine.FloatRecord.from_bytes(p.machine)
        machine.check(record, self.model.device, f"this {self.what}", self.bf16)
        return p, record.threads

    def _known(self, p: framing.LMPayload, lengths: Sequence[int]) -> Dict[int, np.ndarray]:
        known = {}
        for i, b in zip(p.safe, p.safe_data):
            known[i] = self.model.encode(framing.safe_decode(b, self.what))
            if len(known[i]) != lengths[i]:
                raise CorruptStreamError(f"{self.what}: safe segment {i} does not match its token count")
        return known

    def _rows(self, toks: Sequence[np.ndarray], prefix: Sequence[int] = ()) -> np.ndarray:
        """(B, 1 + len(prefix) + n): the start id, the shared prefix, then each row's tokens."""
        seqs = np.zeros((len(toks), 1 + len(prefix) + len(toks[0])), dtype=np.int64)
        seqs[:, 0] = self.model.start
        seqs[:, 1:1 + len(prefix)] = prefix
        for j, t in enumerate(toks):
            seqs[j, 1 + len(prefix):] = t
        return seqs

    def _windows(self, seqs: np.ndarray, prefix: Sequence[int]):
        return plan_windows(seqs.shape[1], 1 + len(prefix), self.window, self.stride)

    # -- chunks in lock-step (lm) ---------------------------------------------------------------------
    def compress_chunks(self, ids: np.ndarray, segment: int, coder_batch: int, prime: int = 0) -> bytes:
        """The payload of ``ids`` cut into chunks of ``segment`` tokens, coded in lock-step; with
        ``prime``, the first ``prime`` tokens are coded first, alone, and every chunk of the rest
        reads them as its context (a chunk then restarts with the text's opening, not with nothing)."""
        n = len(ids)
        lengths = framing.segment_lengths(n, segment, prime)
        cut = np.cumsum([0] + lengths)
        chunks = [ids[a:b] for a, b in zip(cut[:-1], cut[1:])]
        modes, words, self.safe = [LM] * len(chunks), [], []
        with self._bar(n, True) as bar:
            for group in plan_groups(lengths, coder_batch, prime):
                prefix = ids[:prime] if prime and group[0] else ()
                seqs = self._rows([chunks[i] for i in group], prefix)
                (starts, freqs), bad = self._code(seqs, self._windows(seqs, prefix), bar)
                ok = bad < 0
                for j in np.flatnonzero(~ok):
                    modes[group[j]] = SAFE
                    self.safe.append((group[j], int(bad[j])))
                words.append(rans_words([(starts[:, ok], freqs[:, ok])], int(ok.sum())))
        spelled = [self.model.decode(c) for c in chunks]
        return self._payload(n, segment, modes, spelled.__getitem__, words, crcs=len(chunks) > 1, prime=prime)

    def decompress_chunks(self, payload: bytes, length: int, coder_batch: int) -> bytes:
        p, threads = self._unpack(payload, length, lambda lengths, prime: len(plan_groups(lengths, coder_batch, prime)))
        lengths = p.lengths
        known = self._known(p, lengths)
        out: Dict[int, np.ndarray] = dict(known)
        with machine.using_threads(threads, self.model.device), self._bar(p.n_tokens, False) as bar:
            for group, words in zip(plan_groups(lengths, coder_batch, p.prime), p.words):
                prefix = out[0] if p.prime and group[0] else ()  # the prefix group comes first
                n = lengths[group[0]]
                seqs = self._rows([known.get(i, np.zeros(n, dtype=np.int64)) for i in group], prefix)
                active = np.array([i not in known for i in group])
                try:
                    if not active.any():  # every chunk of the group is safe: nothing was coded
                        if len(words):
                            raise CorruptStreamError(f"{len(words)} words for a group with no coded chunk")
                        continue
                    dec = BatchDecoder(words, int(active.sum()), PRECISION_BITS)
                    decode(self.model, seqs, self._windows(seqs, prefix), dec, active, self.kv_cache, bar)
                    dec.check_end()
                except (CorruptStreamError, ValueError) as exc:
                    raise CorruptStreamError(f"{self.what}: the coder of chunks {group[0]}..{group[-1]} did not "
                                             f"end where it began ({exc}). {DIVERGED}") from None
                for j, i in enumerate(group):
                    out[i] = seqs[j, 1 + len(prefix):]
        spelled = [self.model.decode(out[i]) for i in range(len(lengths))]
        if p.crc16 is not None:
            for i, (b, c) in enumerate(zip(spelled, p.crc16)):
                if framing.crc32(b) & 0xFFFF != c:
                    raise CorruptStreamError(f"{self.what}: chunk {i} fails its CRC check. {DIVERGED}")
        return b"".join(spelled)

    # -- blocks with learning (lm-online) -------------------------------------------------------------
    def compress_blocks(self, ids: np.ndarray, prequential) -> bytes:
        """The payload of ``ids`` coded block by block while ``prequential`` learns (it is reset)."""
        seq = np.concatenate([[self.model.start], ids]).astype(np.int64)
        coded: List[Tuple[np.ndarray, np.ndarray]] = []
        modes: List[int] = []
        self.safe = []

        def code(k: int, s: int, e: int) -> bool:
            (starts, freqs), bad = self._code(seq[None], prequential.windows(s, e), bar)
            modes.append(LM if bad[0] < 0 else SAFE)
            if bad[0] < 0:
                coded.append((starts, freqs))
            else:
                self.safe.append((k, int(bad[0])))
            return bool(bad[0] < 0)  # whether the block was coded by the model (else safe)

        prequential.reset()
        with self._bar(len(ids), True) as bar:
            prequential.run(seq, mode="code", on_block=code)
        blocks = prequential.blocks(len(ids))
        words = rans_words(coded, 1) if coded else np.zeros(0, dtype=np.uint32)
        spell = lambda k: self.model.decode(seq[blocks[k][0]:blocks[k][1]])  # noqa: E731
        return self._payload(len(ids), prequential.block_tokens, modes, spell, [words], crcs=False)

    def decompress_blocks(self, payload: bytes, length: int, prequential) -> bytes:
        p, threads = self._unpack(payload, length, lambda lengths, prime: 1 if lengths else 0)
        blocks = prequential.blocks(p.n_tokens)
        if [e - s for s, e in blocks] != p.lengths:
            raise CorruptStreamError(f"{self.what}: its blocks of {p.segment} tokens are not this compressor's "
                                     f"blocks of {prequential.block_tokens}: the stream is corrupted")
        known = self._known(p, p.lengths)
        seq = np.zeros(p.n_tokens + 1, dtype=np.int64)
        seq[0] = self.model.start
        try:
            dec = BatchDecoder(p.words[0] if p.words else np.zeros(0, dtype=np.uint32), 1, PRECISION_BITS)

            def code(k: int, s: int, e: int) -> bool:
                if k in known:
                    seq[s:e] = known[k]
                    return False
                decode(self.model, seq[None], prequential.windows(s, e), dec, np.array([True]),
                       self.kv_cache, bar)
                return True

            with machine.using_threads(threads, self.model.device), self._bar(p.n_tokens, False) as bar:
                prequential.reset()
                prequential.run(seq, mode="code", on_block=code)
            dec.check_end()
        except (CorruptStreamError, ValueError) as exc:
            raise CorruptStreamError(f"{self.what}: the coder did not end where it began ({exc}). {DIVERGED}") from None
        return self.model.decode(seq[1:])

    # -- diagnostics ----------------------------------------------------------------------------------
    def diagnose(self, chunks: Sequence[np.ndarray], coder_batch: int):
        """Run every group's schedule twice, teacher-forced, and report where the tables first differ
        (chunks as :meth:`compress_chunks` cuts them, without a shared prefix)."""
        from .schedule import Divergence, compare_runs
        max_p, max_f, n_steps = 0.0, 0, 0
        first: Optional[Tuple[int, int]] = None
        for group in groups([len(c) for c in chunks], coder_batch):
            seqs = self._rows([chunks[i] for i in group])
            if seqs.shape[1] < 2:
                continue
            dp, df, differ = compare_runs(self.model, seqs, plan_windows(seqs.shape[1], 1, self.window, self.stride),
                                          self.kv_cache)
            n_steps += differ.size
            max_p, max_f = max(max_p, dp), max(max_f, df)
            if first is None and differ.any():
                k, j = np.argwhere(differ)[0]
                first = (group[int(j)], int(k))
        return Divergence(identical=max_p == 0.0 and max_f == 0, chunk=None if first is None else first[0],
                          step=None if first is None else first[1], max_prob_diff=max_p, max_freq_diff=max_f,
                          steps_compared=n_steps)
