"""A GSM modem on a serial port: AT commands, PDU mode, UCS-2 and concatenated parts, replies via ``+CMTI``.

Set-up (once per opening): ``ATE0``, ``AT+CMEE=1``, ``AT+CPIN?`` (must be READY), ``AT+CREG?`` (registered, home or
roaming), ``AT+CSQ`` (logged), ``AT+CMGF=0`` (PDU mode), ``AT+CNMI=2,1,0,0,0`` (a new SMS is announced as
``+CMTI: "SM",<index>``). Sending is ``AT+CMGS=<length>``, the ``>`` prompt, the hex PDU and Ctrl-Z, per part.
``+CMS ERROR: 500`` (often weak signal or a sagging supply) is retryable. A serial error closes the port; the next
attempt opens it again, so a modem unplugged and plugged back needs no restart. An error on part 2 or later of a
multipart text is ``partial``: the outbox comes back to this modem for the missing parts only, so the farmer gets the
whole text once (not a cut copy here and a whole one through another transport).

It does not need the internet, which is the point: the outbox sends through it while the uplink is down.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from edge.gateway.alerts.numbers import canonical
from edge.gateway.alerts.transports.base import IncomingSms, Outcome, OutgoingSms, SendResult
from edge.gateway.alerts.transports.pdu import Decoded, PduError, decode_deliver, encode_submit, reassemble

log = logging.getLogger(__name__)

SETUP = ("ATE0", "AT+CMEE=1", "AT+CPIN?", "AT+CREG?", "AT+CSQ", "AT+CMGF=0", "AT+CNMI=2,1,0,0,0")
CTRL_Z = b"\x1a"
_CMTI = re.compile(r'^\+CMTI:\s*"?\w*"?,\s*(\d+)')
_CMGL = re.compile(r"^\+CMGL:\s*(\d+)")
_CMS_MEANING = {500: "unknown error: often weak signal or power", 304: "invalid PDU parameter",
                330: "SMSC address unknown", 331: "no network service", 332: "network timeout", 38: "network out "
                "of order", 42: "congestion", 310: "no SIM", 311: "SIM PIN required", 322: "SIM memory full"}


class ModemError(Exception):
    """The modem answered a command with an error."""

    def __init__(self, command: str, answer: str):
        self.command, self.answer = command, answer
        match = re.search(r"(\d+)", answer)
        self.code = int(match.group(1)) if match else None
        meaning = _CMS_MEANING.get(self.code, "") if "CMS" in answer else ""
        super().__init__(f"{command.split('=')[0]}: {answer}" + (f" ({meaning})" if meaning else ""))


class ModemTimeout(Exception):
    """The modem did not answer in time."""


def open_serial(port: str, baudrate: int) -> Any:
    import serial  # pyserial: imported only when a modem is configured

    return serial.serial_for_url(port, baudrate=baudrate, timeout=0.05, write_timeout=5)


def _serial_errors() -> tuple[type[BaseException], ...]:
    try:
        import serial

        return (serial.SerialException, OSError)
    except ImportError:  # pragma: no cover - pyserial is a dependency
        return (OSError,)


class ModemTransport:
    needs_uplink = False

    def __init__(self, port: str, baudrate: int = 115200, *, name: str = "modem", timeout: float = 30.0,
                 country: str = "98", opener: Callable[[str, int], Any] = open_serial):
        self.name = name
        self.port, self.baudrate, self.timeout = port, baudrate, timeout
        self.country = country
        self._opener = opener
        self._serial: Any = None
        self._buffer = b""
        self._lock = threading.Lock()
        self._announced: list[int] = []  # storage indexes from +CMTI, not read yet
        self._partial: list[Decoded] = []  # parts of concatenated replies still missing a part
        self._stored_checked = False
        self._pdus_written = 0
        self._errors = _serial_errors()

    @classmethod
    def from_config(cls, cfg, secret: str | None = None, *, country: str = "98") -> "ModemTransport":
        return cls(cfg.port, cfg.baudrate, name=cfg.name, timeout=cfg.timeout, country=country)

    # ---------------------------------------------------------------------------------------------- the port

    def _ensure_open(self) -> None:
        if self._serial is not None:
            return
        self._serial = self._opener(self.port, self.baudrate)
        self._buffer = b""
        try:
            self._setup()
        except BaseException:
            self._drop()
            raise

    def _setup(self) -> None:
        answers = {command: self._command(command, timeout=min(self.timeout, 5.0)) for command in SETUP}
        if not any("READY" in line for line in answers["AT+CPIN?"]):
            raise ModemError("AT+CPIN?", " ".join(answers["AT+CPIN?"]) or "SIM not ready")
        if not any(re.search(r"\+CREG:\s*\d+,\s*[15]\b", line) for line in answers["AT+CREG?"]):
            raise ModemError("AT+CREG?", " ".join(answers["AT+CREG?"]) + " (not registered on the network)")
        log.info("modem %s ready on %s (%s)", self.name, self.port, " ".join(answers["AT+CSQ"]))

    def _drop(self) -> None:
        if self._serial is not None:
            try:
                self._serial.close()
            except self._errors:
                pass
        self._serial = None

    def _write(self, data: bytes) -> None:
        self._serial.write(data)
        self._serial.flush()

    def _read_line(self, deadline: float) -> str | None:
        """The next line from the modem (``">"`` for the PDU prompt), or None at the deadline."""
        while True:
            self._buffer = self._buffer.lstrip(b"\r\n")
            if self._buffer.startswith(b">"):
                self._buffer = self._buffer[1:].lstrip(b" ")
                return ">"
            ends = [i for i in (self._buffer.find(b"\r"), self._buffer.find(b"\n")) if i >= 0]
            if ends:
                line, self._buffer = self._buffer[:min(ends)], self._buffer[min(ends) + 1:]
                return line.decode("ascii", "replace").strip()
            if time.monotonic() >= deadline:
                return None
            self._buffer += self._serial.read(max(1, getattr(self._serial, "in_waiting", 0) or 0))

    def _await(self, command: str, deadline: float, prompt: bool = False) -> list[str]:
        """Lines of the answer to ``command`` up to its final result; unsolicited ``+CMTI`` lines are noted."""
        lines: list[str] = []
        while True:
            line = self._read_line(deadline)
            if line is None:
                raise ModemTimeout(f"{command.split('=')[0]}: no answer from the modem")
            if line == command or not line:
                continue  # echo (before ATE0 takes effect)
            if _CMTI.match(line):
                self._announced.append(int(_CMTI.match(line).group(1)))
            elif line == ">":
                if prompt:
                    return lines
            elif line == "OK":
                return lines
            elif line == "ERROR" or line.startswith(("+CMS ERROR", "+CME ERROR")):
                raise ModemError(command, line)
            else:
                lines.append(line)

    def _command(self, command: str, timeout: float | None = None, prompt: bool = False) -> list[str]:
        self._write(command.encode("ascii") + b"\r")
        return self._await(command, time.monotonic() + (timeout or self.timeout), prompt)

    # ------------------------------------------------------------------------------------------------ sending

    def _send_part(self, hex_pdu: str, length: int) -> str:
        self._command(f"AT+CMGS={length}", prompt=True)
        self._write(hex_pdu.encode("ascii") + CTRL_Z)
        self._pdus_written += 1
        lines = self._await("AT+CMGS", time.monotonic() + self.timeout)
        return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("+CMGS:")), "")

    def send(self, sms: OutgoingSms) -> SendResult:
        """Send the parts of ``sms`` from ``sms.parts_done`` on. Every part carries the same concatenation reference
        (from the local id), so parts sent in two attempts make one message on the phone.

        Once a part of the text is out, a failure is ``partial`` (an error answer: the part in hand was refused)
        or ``ambiguous`` (no answer: the part in hand may be out too), never ``retryable``: another transport
        would send the first parts again."""
        reference = int(sms.local_id) % 256 if sms.local_id.isdigit() else sum(sms.local_id.encode()) % 256
        pdus = encode_submit(sms.number, sms.text, reference)
        done = min(max(sms.parts_done, 0), len(pdus))
        with self._lock:
            self._pdus_written = 0
            try:
                self._ensure_open()
                references = []
                for pdu in pdus[done:]:
                    references.append(self._send_part(pdu.hex, pdu.length))
                    done += 1
            except ModemError as exc:
                where = f"part {done + 1} of {len(pdus)}"
                return SendResult("partial" if done else "retryable", f"{exc} ({where})", parts_done=done)
            except ModemTimeout as exc:
                self._drop()
                # once a PDU went out the message may have been sent: retry here, never on a second transport
                return SendResult(self._unanswered(done), f"{exc} (part {done + 1} of {len(pdus)})",
                                  parts_done=done)
            except self._errors as exc:
                self._drop()
                return SendResult(self._unanswered(done), f"serial port {self.port}: {exc}", parts_done=done)
        resumed = f", parts {sms.parts_done + 1}-{len(pdus)} now" if sms.parts_done else ""
        return SendResult("accepted", f"{len(pdus)} part(s){resumed}", ",".join(references), parts_done=len(pdus))

    def _unanswered(self, done: int) -> Outcome:
        """The outcome when the modem stopped answering: a PDU it took may have gone out (ambiguous); else parts
        sent earlier still must not be sent again elsewhere (partial); else nothing went out (retryable)."""
        if self._pdus_written:
            return "ambiguous"
        return "partial" if done else "retryable"

    # ---------------------------------------------------------------------------------------------- receiving

    def _stored_indexes(self) -> list[int]:
        """Messages already in storage when we opened the port (replies that came while the daemon was down)."""
        lines = self._command("AT+CMGL=4")
        return [int(m.group(1)) for m in map(_CMGL.match, lines) if m]

    def _read_pending(self) -> None:
        deadline = time.monotonic() + 0.1
        while (line := self._read_line(deadline)) is not None:
            match = _CMTI.match(line)
            if match:
                self._announced.append(int(match.group(1)))

    def _read_stored(self, index: int) -> Decoded | None:
        lines = self._command(f"AT+CMGR={index}")
        pdu = next((line for line in lines if not line.startswith("+CMGR")), None)
        self._command(f"AT+CMGD={index}")
        if pdu is None:
            return None
        try:
            return decode_deliver(pdu)
        except PduError as exc:
            log.warning("modem %s: unreadable SMS at index %d: %s", self.name, index, exc)
            return None

    def receive(self) -> list[IncomingSms]:
        parts: list[Decoded] = []
        with self._lock:
            try:
                self._ensure_open()
                if not self._stored_checked:
                    self._announced.extend(i for i in self._stored_indexes() if i not in self._announced)
                    self._stored_checked = True
                self._read_pending()
                while self._announced:
                    part = self._read_stored(self._announced.pop(0))
                    if part is not None:
                        parts.append(part)
            except (ModemError, ModemTimeout) as exc:
                log.warning("modem %s: reading replies failed: %s", self.name, exc)
            except self._errors as exc:
                log.warning("modem %s: serial port %s failed: %s", self.name, self.port, exc)
                self._drop()
        return self._complete(parts)

    def _complete(self, parts: list[Decoded]) -> list[IncomingSms]:
        pool = self._partial + parts
        whole = reassemble(pool)
        done = {(m.number, m.reference) for m in whole if m.reference is not None}
        self._partial = [p for p in pool if p.reference is not None and p.total > 1 and
                         (p.number, p.reference) not in done]
        out = []
        for message in whole:
            try:
                out.append(IncomingSms(canonical(message.number, self.country), message.text, self.name))
            except ValueError:
                log.info("modem %s: ignoring an SMS from %r (not a phone number)", self.name, message.number)
        return out

    def close(self) -> None:
        with self._lock:
            self._drop()
