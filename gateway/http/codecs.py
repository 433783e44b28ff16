"""A request body that does not parse is the caller's mistake: INVALID_ARGUMENT (HTTP 400), saying
what did not parse, as the gRPC port answers a message it cannot decode.

connect-python 0.9 lets a codec's exception through as UNKNOWN (HTTP 500) with the parser's own
words, for malformed JSON, a field of the wrong type, an unknown field or bytes that are not the
message. Its codecs live in a module-level registry that it reads per call and offers no hook for,
so `install` wraps each registered codec once (tests/integration/test_http_gateway.py checks the
answers, and fails if a later release moves the registry).
"""

from __future__ import annotations

import re
from typing import Any

from connectrpc import _codec
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

from renderkit.errors import safe_message

# The largest JSON message decoded: protobuf's JSON parser is Python, ~0.14 s of the event loop (which
# the gRPC port shares) a megabyte, so a large one would hold every other call. Binary messages
# (what the TypeScript client sends) are parsed in C and limited only by MAX_REQUEST_BYTES.
MAX_JSON_BYTES = 2 * 1024 * 1024


class StrictCodec:
    """A codec whose decoding failures are the caller's: INVALID_ARGUMENT naming the message."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def name(self) -> str:
        return str(self.inner.name())

    def encode(self, message: Message) -> bytes:
        return bytes(self.inner.encode(message))

    def decode(self, data: bytes | bytearray, message: Message) -> Message:
        kind = message.DESCRIPTOR.full_name
        if len(data) > MAX_JSON_BYTES and "json" in self.name():
            raise ConnectError(
                Code.RESOURCE_EXHAUSTED,
                f"a JSON request may be at most {MAX_JSON_BYTES:,} bytes; send large images in the binary "
                "encoding, as assets or by URL",
            )
        try:
            return self.inner.decode(data, message)  # type: ignore[no-any-return]
        except ConnectError:
            raise
        except json_format.ParseError as exc:  # which field, in the API's own names
            raise ConnectError(
                Code.INVALID_ARGUMENT, safe_message(f"the request is not a valid {kind}: {json_problem(exc)}")
            ) from None
        except (DecodeError, ValueError, TypeError, RecursionError):
            raise ConnectError(
                Code.INVALID_ARGUMENT, f"the request is not a valid {kind} in the {self.name()} encoding"
            ) from None


_AT_PATH = re.compile(r" at [A-Za-z0-9_]+\.([A-Za-z0-9_.\[\]]+?)\.*\s*\Z")
_PARSING = re.compile(r"Failed to parse ([A-Za-z0-9_]+) field")
_NO_FIELD = re.compile(r'has no field named "([A-Za-z0-9_]{1,64})"')


def json_problem(exc: json_format.ParseError) -> str:
    """What protobuf's JSON parser found wrong, by the field's path only: its own text goes on
    with Python's ("invalid literal for int() with base 10", "object of type 'int' has no len()",
    the json module's recursion limit), which is not the API's to say."""
    text = str(exc)
    if text.startswith("Failed to load JSON"):
        return "the body is not valid JSON"
    if found := _NO_FIELD.search(text):
        return f'it has no field named "{found.group(1)}"'
    if found := _AT_PATH.search(text):
        return f"{found.group(1)}: not a valid value"
    if fields := _PARSING.findall(text):
        return f"{'.'.join(fields)}: not a valid value"
    return "it does not have the message's JSON form"


def install() -> None:
    """Wraps every codec connect-python has registered (once; calling again changes nothing)."""
    registry: dict[str, Any] = _codec._codecs
    for name, codec in list(registry.items()):
        if not isinstance(codec, StrictCodec):
            registry[name] = StrictCodec(codec)
