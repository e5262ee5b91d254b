"""Encoders: the table codec's vectors, the sealed encoder, and encoders
written in Python, used directly and by a client against a real server."""

import base64

import pytest

import dlm

LOCKED_VECTOR = "a^1laBaMagaMa$am1l1t1l1za@a8aJaHah1laP"


def test_table_codec_vectors():
    t = dlm.TableEncoder()
    assert t.encode("k", b"{") == "a^"
    assert t.encode("k", bytes([0, 255])) == "1128"
    assert t.encode("k", '{"Status":"Locked"}') == LOCKED_VECTOR
    assert t.decode("k", LOCKED_VECTOR) == b'{"Status":"Locked"}'
    every = bytes(range(256))
    encoded = t.encode("k", every)
    assert len(encoded) == 512 and t.decode("k", encoded) == every
    assert t.encode("k", bytearray(b"{")) == "a^"


@pytest.mark.parametrize("bad", ["odd", "~~", "1", "\u00e9\u00e9"])
def test_table_codec_rejects_what_no_byte_makes(bad):
    with pytest.raises(dlm.EncodingError) as e:
        dlm.TableEncoder().decode("k", bad)
    assert e.value.code == "Encoding"


def test_sealed_encoder():
    key = dlm.SealedEncoder.generate_key()
    assert isinstance(key, bytes) and len(key) == 32
    s = dlm.SealedEncoder(key)
    a, b = s.encode("k", b"secret"), s.encode("k", b"secret")
    assert a != b, "a fresh nonce per value"
    assert "secret" not in a
    assert s.decode("k", a) == b"secret"
    with pytest.raises(dlm.EncodingError):
        s.decode("other-name", a)  # bound to its key's name
    with pytest.raises(dlm.EncodingError):
        dlm.SealedEncoder(dlm.SealedEncoder.generate_key()).decode("k", a)
    with pytest.raises(dlm.EncodingError):
        s.decode("k", a[:-2] + ("A" if a[-1] != "A" else "B") * 2)
    assert "redacted" in repr(s) and key.hex() not in repr(s)


@pytest.mark.parametrize("key", [b"", b"short", b"x" * 31, b"x" * 33, "a str key of 32 characters!!!!!"])
def test_sealed_encoder_refuses_bad_keys(key):
    with pytest.raises(dlm.InvalidArgumentError):
        dlm.SealedEncoder(key)


def test_a_sealed_client_stores_only_ciphertext(server, name):
    key = dlm.SealedEncoder.generate_key()
    sealed = dlm.Client(server.addr, client_id="sealer", encoder=dlm.SealedEncoder(key))
    sealed.put(name, "the launch codes")
    assert sealed.get(name).text == "the launch codes"
    # What the server holds, read raw by the same owner: no plaintext.
    raw = dlm.Client(server.addr, client_id="sealer", encoder=dlm._native.RawEncoder())
    stored = raw.get(name).text
    assert "launch" not in stored and "launch" not in _table_decoded(stored)
    # A table-codec client of the same owner cannot make sense of it.
    with pytest.raises(dlm.EncodingError):
        dlm.Client(server.addr, client_id="sealer").get(name)


def _table_decoded(text: str) -> str:
    try:
        return dlm.TableEncoder().decode("k", text).decode("latin-1")
    except dlm.EncodingError:
        return ""


class Base64Encoder:
    """A custom encoder: an object with encode/decode methods."""

    def __init__(self):
        self.names = []

    def encode(self, name, value):
        self.names.append(name)
        return base64.b64encode(value).decode()

    def decode(self, name, stored):
        return base64.b64decode(stored)


def test_a_python_encoder_object(server, name):
    enc = Base64Encoder()
    c = dlm.Client(server.addr, client_id="b64", encoder=enc)
    c.put(name, b"\x00\x01 bytes")
    assert enc.names == [name]
    assert c.get(name).value == b"\x00\x01 bytes"
    raw = dlm.Client(server.addr, client_id="b64", encoder=dlm._native.RawEncoder())
    assert raw.get(name).text == base64.b64encode(b"\x00\x01 bytes").decode()


def test_function_encoder_of_two_callables(server, name):
    enc = dlm.FunctionEncoder(lambda v: v.hex(), lambda s: bytes.fromhex(s).decode())
    c = dlm.Client(server.addr, client_id="hex", encoder=enc)
    c.put(name, "text")
    assert c.get(name).value == b"text"


class Raising:
    def encode(self, name, value):
        raise RuntimeError("encoder broke")

    def decode(self, name, stored):
        return 42  # not bytes


def test_a_failing_encoder_raises_encoding_error_with_its_cause(server, name):
    c = dlm.Client(server.addr, client_id="raiser", encoder=Raising())
    with pytest.raises(dlm.EncodingError) as e:
        c.put(name, "x")
    assert isinstance(e.value.__cause__, RuntimeError)
    assert "encoder broke" in str(e.value)
    dlm.Client(server.addr, client_id="raiser").put(name, "plain")
    with pytest.raises(dlm.EncodingError) as e:
        c.get(name)
    assert isinstance(e.value.__cause__, TypeError)


def test_an_object_without_methods_is_refused(server):
    with pytest.raises(dlm.InvalidArgumentError):
        dlm.Client(server.addr, encoder=object())
