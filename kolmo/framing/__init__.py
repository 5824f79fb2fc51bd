"""Every byte layout kolmo writes, and nothing else: no other module packs or parses stream bytes.

    container.py     the stream container: magic, format version, compressor tag, config hash,
                     length, CRCs (every compressor's streams)
    lm_payload.py    the language models' payload inside it: segment table, safe segments, rANS words
    float_record.py  the payload's first 3 bytes: what the encoder's floats depended on
    cli_file.py      the file ``kolmo compress`` writes: the compressor and its options, then the stream

Imports nothing of kolmo but its errors. The names below are the package's interface.
"""

from .cli_file import pack_cli_file, unpack_cli_file
from .container import (MAGIC, MAGIC_V1, VERSION, Frame, check_output, config_hash, config_hash_of, crc32,
                        fingerprint, know_writer, name_tag, pack, read_varint, unpack, varint)
from .float_record import pack_float_record, unpack_float_record
from .lm_payload import (PAYLOAD_VERSION, RETIRED_PAYLOADS, LMPayload, pack_lm_payload, safe_code, safe_decode,
                         segment_lengths, unpack_lm_payload)

__all__ = ["MAGIC", "MAGIC_V1", "VERSION", "Frame", "check_output", "config_hash", "config_hash_of", "crc32",
           "fingerprint", "know_writer", "name_tag", "pack", "read_varint", "unpack", "varint", "pack_cli_file",
           "unpack_cli_file", "pack_float_record", "unpack_float_record", "PAYLOAD_VERSION", "RETIRED_PAYLOADS",
           "LMPayload", "pack_lm_payload", "safe_code", "safe_decode", "segment_lengths", "unpack_lm_payload"]
