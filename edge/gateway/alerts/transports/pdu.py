"""SMS PDUs (3GPP TS 23.040) for the GSM modem: SMS-SUBMIT out, SMS-DELIVER in, concatenated parts via a UDH.

Pure functions on strings and bytes. Texts are cut into parts by :func:`..segments.split_parts`, the same function
that counted the segments when the message was composed, so a 135-139 character Persian message is three parts of
whole text here too (a widely used modem library truncates them to 134).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from edge.gateway.alerts.segments import (GSM7_BASIC, GSM7_ESCAPE, GSM7_EXTENSION, Encoding, encoding_of,
                                          split_parts)

_BASIC = {ch: i for i, ch in enumerate(GSM7_BASIC) if i != GSM7_ESCAPE}
_EXTENSION_BACK = {code: ch for ch, code in GSM7_EXTENSION.items()}
_CONCAT_IEI = 0x00  # concatenated short message, 8-bit reference
_DCS = {"gsm7": 0x00, "ucs2": 0x08}


class PduError(ValueError):
    """A PDU that cannot be decoded."""


@dataclass(frozen=True, slots=True)
class SubmitPdu:
    """One part ready for ``AT+CMGS=<length>``: the hex string and the TPDU length (octets after the SMSC field)."""

    hex: str
    length: int


@dataclass(frozen=True, slots=True)
class Decoded:
    """A decoded SUBMIT or DELIVER part."""

    number: str
    text: str
    reference: int | None = None  # concatenation reference, total and sequence number (1-based) when multipart
    total: int = 1
    sequence: int = 1
    timestamp: str | None = None  # SCTS of a DELIVER, as ``YYMMDDhhmmss+zz`` digits


# ------------------------------------------------------------------------------------------------------ numbers


def _semi_octets(digits: str) -> bytes:
    padded = digits + ("F" if len(digits) % 2 else "")
    return bytes.fromhex("".join(padded[i + 1] + padded[i] for i in range(0, len(padded), 2)))


def _from_semi_octets(data: bytes, count: int) -> str:
    text = "".join(f"{b:02X}"[::-1] for b in data)
    return text[:count]


def encode_address(number: str) -> bytes:
    """``+989121234567`` -> length, type 0x91 (international) and swapped digits; other forms use type 0x81."""
    international = number.startswith("+")
    digits = number.lstrip("+")
    if not digits.isdigit():
        raise ValueError(f"not a phone number: {number!r}")
    return bytes([len(digits), 0x91 if international else 0x81]) + _semi_octets(digits)


def _decode_address(data: bytes, pos: int) -> tuple[str, int]:
    count, kind = data[pos], data[pos + 1]
    size = (count + 1) // 2
    body = data[pos + 2: pos + 2 + size]
    if (kind >> 4) & 0x07 == 0x05:  # alphanumeric sender: GSM-7 packed
        text = _gsm7_decode(_unpack_septets(body, count * 4 // 7, 0))
        return text, pos + 2 + size
    digits = _from_semi_octets(body, count)
    return ("+" if kind & 0x70 == 0x10 else "") + digits, pos + 2 + size


# ------------------------------------------------------------------------------------------------------- GSM-7


def _gsm7_septets(text: str) -> list[int]:
    septets = []
    for ch in text:
        if ch in _BASIC:
            septets.append(_BASIC[ch])
        elif ch in GSM7_EXTENSION:
            septets += [GSM7_ESCAPE, GSM7_EXTENSION[ch]]
        else:
            raise ValueError(f"{ch!r} is not in the GSM 7-bit alphabet")
    return septets


def _gsm7_decode(septets: Iterable[int]) -> str:
    out, escaped = [], False
    for s in septets:
        if escaped:
            out.append(_EXTENSION_BACK.get(s, " "))
            escaped = False
        elif s == GSM7_ESCAPE:
            escaped = True
        else:
            out.append(GSM7_BASIC[s])
    return "".join(out)


def _pack_septets(septets: list[int], fill_bits: int) -> bytes:
    out, acc, bits = bytearray(), 0, fill_bits
    for s in septets:
        acc |= s << bits
        bits += 7
        while bits >= 8:
            out.append(acc & 0xFF)
            acc >>= 8
            bits -= 8
    if bits > 0:
        out.append(acc & 0xFF)
    return bytes(out)


def _unpack_septets(data: bytes, count: int, fill_bits: int) -> list[int]:
    value = int.from_bytes(data, "little")
    return [(value >> (fill_bits + 7 * i)) & 0x7F for i in range(count)]


# ------------------------------------------------------------------------------------------------- user data


def _udh(reference: int, total: int, sequence: int) -> bytes:
    return bytes([5, _CONCAT_IEI, 3, reference & 0xFF, total, sequence])


def _user_data(text: str, encoding: Encoding, header: bytes) -> tuple[int, bytes]:
    """``(UDL, UD)``: UDL counts septets for GSM-7 (header included, with fill bits) and octets for UCS-2."""
    if encoding == "ucs2":
        body = header + text.encode("utf-16-be")
        return len(body), body
    fill = (7 - (len(header) * 8) % 7) % 7 if header else 0
    septets = _gsm7_septets(text)
    header_septets = (len(header) * 8 + fill) // 7
    return header_septets + len(septets), header + _pack_septets(septets, fill)


def _read_user_data(data: bytes, pos: int, dcs: int, has_header: bool) -> tuple[str, int | None, int, int]:
    udl = data[pos]
    ud = data[pos + 1:]
    reference, total, sequence = None, 1, 1
    header_len = 0
    if has_header:
        header_len = ud[0] + 1
        header = ud[1:header_len]
        i = 0
        while i + 1 < len(header):
            iei, size = header[i], header[i + 1]
            if iei == _CONCAT_IEI and size == 3:
                reference, total, sequence = header[i + 2], header[i + 3], header[i + 4]
            elif iei == 0x08 and size == 4:  # 16-bit reference
                reference = (header[i + 2] << 8) | header[i + 3]
                total, sequence = header[i + 4], header[i + 5]
            i += 2 + size
    alphabet = _alphabet(dcs)
    if alphabet == "ucs2":
        text = ud[header_len:udl].decode("utf-16-be", errors="replace")
    elif alphabet == "8bit":
        text = ud[header_len:udl].decode("latin-1")
    else:
        fill = (7 - (header_len * 8) % 7) % 7 if header_len else 0
        skip = (header_len * 8 + fill) // 7
        text = _gsm7_decode(_unpack_septets(ud[header_len:], udl - skip, fill))
    return text, reference, total, sequence


def _alphabet(dcs: int) -> str:
    if dcs & 0xF0 == 0xF0:
        return "8bit" if dcs & 0x04 else "gsm7"
    if dcs & 0xC0 == 0x00 or dcs & 0xC0 == 0x40:
        return {0: "gsm7", 1: "8bit", 2: "ucs2"}.get((dcs >> 2) & 0x03, "gsm7")
    return "ucs2" if dcs & 0xF0 == 0xE0 else "gsm7"


# --------------------------------------------------------------------------------------------- SMS-SUBMIT (out)


def encode_submit(number: str, text: str, reference: int = 0) -> list[SubmitPdu]:
    """The PDUs that send ``text`` to ``number``: one, or several parts joined by a concatenation header."""
    encoding = encoding_of(text)
    parts = split_parts(text, encoding)
    address = encode_address(number)
    pdus = []
    for sequence, part in enumerate(parts, start=1):
        header = _udh(reference, len(parts), sequence) if len(parts) > 1 else b""
        udl, ud = _user_data(part, encoding, header)
        first = 0x01 | (0x40 if header else 0)  # SMS-SUBMIT, no validity period, UDHI when concatenated
        tpdu = bytes([first, 0x00]) + address + bytes([0x00, _DCS[encoding], udl]) + ud
        pdus.append(SubmitPdu(("00" + tpdu.hex()).upper(), len(tpdu)))
    return pdus


def decode_submit(hex_pdu: str) -> Decoded:
    """Decode an SMS-SUBMIT (what the simulated modem receives from the gateway)."""
    try:
        data = bytes.fromhex(hex_pdu)
        pos = 1 + data[0]  # SMSC information
        first = data[pos]
        if first & 0x03 != 0x01:
            raise PduError(f"not an SMS-SUBMIT (first octet {first:02X})")
        pos += 2  # first octet, message reference
        number, pos = _decode_address(data, pos)
        dcs = data[pos + 1]
        pos += 2
        vpf = (first >> 3) & 0x03
        pos += {0: 0, 2: 1}.get(vpf, 7)
        text, reference, total, sequence = _read_user_data(data, pos, dcs, bool(first & 0x40))
    except (IndexError, ValueError) as exc:
        raise PduError(f"malformed SMS-SUBMIT PDU: {exc}") from None
    return Decoded(number, text, reference, total, sequence)


# -------------------------------------------------------------------------------------------- SMS-DELIVER (in)


def encode_deliver(sender: str, text: str, timestamp: str = "25071510300000", reference: int = 0) -> list[str]:
    """PDUs of an incoming SMS as a modem stores it (for the simulated modem)."""
    encoding = encoding_of(text)
    parts = split_parts(text, encoding)
    out = []
    for sequence, part in enumerate(parts, start=1):
        header = _udh(reference, len(parts), sequence) if len(parts) > 1 else b""
        udl, ud = _user_data(part, encoding, header)
        first = 0x04 | (0x40 if header else 0)  # SMS-DELIVER, no more messages to send
        tpdu = bytes([first]) + encode_address(sender) + bytes([0x00, _DCS[encoding]]) + \
            _semi_octets(timestamp) + bytes([udl]) + ud
        out.append(("00" + tpdu.hex()).upper())
    return out


def decode_deliver(hex_pdu: str) -> Decoded:
    """Decode an SMS-DELIVER read with ``AT+CMGR`` / ``AT+CMGL`` in PDU mode."""
    try:
        data = bytes.fromhex(hex_pdu)
        pos = 1 + data[0]
        first = data[pos]
        if first & 0x03 != 0x00:
            raise PduError(f"not an SMS-DELIVER (first octet {first:02X})")
        number, pos = _decode_address(data, pos + 1)
        dcs = data[pos + 1]
        timestamp = _from_semi_octets(data[pos + 2: pos + 9], 14)
        text, reference, total, sequence = _read_user_data(data, pos + 9, dcs, bool(first & 0x40))
    except (IndexError, ValueError) as exc:
        raise PduError(f"malformed SMS-DELIVER PDU: {exc}") from None
    return Decoded(number, text, reference, total, sequence, timestamp)


def reassemble(parts: Iterable[Decoded]) -> list[Decoded]:
    """Join concatenated parts (same sender and reference) into whole messages; incomplete ones are left out."""
    singles, groups = [], {}
    for part in parts:
        if part.reference is None or part.total <= 1:
            singles.append(part)
        else:
            groups.setdefault((part.number, part.reference, part.total), {})[part.sequence] = part
    for (number, reference, total), pieces in groups.items():
        if len(pieces) == total:
            text = "".join(pieces[i].text for i in range(1, total + 1))
            singles.append(Decoded(number, text, reference, total, 1, pieces[1].timestamp))
    return singles
