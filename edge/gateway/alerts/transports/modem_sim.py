"""A simulated GSM modem on a pseudo-terminal, for the demo and the tests (a real module, not a mock).

It answers the AT commands the modem transport uses (see ``../shared`` field notes: ``ATE0``, ``AT+CMEE=1``,
``AT+CPIN?``, ``AT+CREG?``, ``AT+CSQ``, ``AT+CMGF=0``, ``AT+CNMI=2,1,0,0,0``, ``AT+CMGS``, ``AT+CMGR``, ``AT+CMGD``,
``AT+CMGL``), echoes until ``ATE0`` like a real modem, decodes every PDU it is given, answers ``+CMS ERROR: 500`` on
demand, and can receive an SMS: it stores the DELIVER PDUs and announces them with ``+CMTI: "SM",<index>``.

    modem = SimulatedModem()
    transport = ModemTransport(modem.port)      # pyserial opens the pty's slave side like /dev/ttyUSB2
    modem.fail_next(code=500)                   # or fail_next(after=1): part 1 goes out, part 2 fails
    modem.deliver("+989121234567", "۱۷")
    modem.messages  -> [(number, text, parts)] of everything sent through it
"""

from __future__ import annotations

import os
import re
import select
import threading
import tty
from dataclasses import dataclass

from edge.gateway.alerts.transports.pdu import Decoded, PduError, decode_submit, encode_deliver, reassemble

CTRL_Z = b"\x1a"
ESC = b"\x1b"


@dataclass(frozen=True)
class SentMessage:
    number: str
    text: str
    parts: int


class SimulatedModem:
    def __init__(self, *, registered: bool = True, signal: int = 18):
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.port = os.ttyname(self._slave)
        self.registered = registered
        self.signal = signal
        self.echo = True
        self.silent = False  # when True the modem reads but never answers (a hung modem)
        self.commands: list[str] = []
        self.parts: list[Decoded] = []
        self.storage: dict[int, str] = {}  # index -> DELIVER PDU (hex)
        self._failures: list[int | None] = []  # per coming PDU: refuse with this code, or None: take it
        self._next_index = 1
        self._reference = 0
        self._expect_pdu = False
        self._input = b""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="simulated-modem", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------------------------------- test controls

    def fail_next(self, count: int = 1, code: int = 500, after: int = 0) -> None:
        """After ``after`` more PDUs are taken, the next ``count`` are refused with ``+CMS ERROR: <code>``
        (``after=1`` on a three-part text: part 1 goes out, part 2 fails)."""
        with self._lock:
            self._failures.extend([None] * after + [code] * count)

    def deliver(self, number: str, text: str) -> list[int]:
        """An SMS arrives from ``number``: stored, then announced with ``+CMTI``."""
        with self._lock:
            self._reference = (self._reference + 1) % 256
            indexes = []
            for pdu in encode_deliver(number, text, reference=self._reference):
                index = self._next_index
                self._next_index += 1
                self.storage[index] = pdu
                indexes.append(index)
        for index in indexes:
            self._send(f'\r\n+CMTI: "SM",{index}\r\n')
        return indexes

    def store(self, number: str, text: str) -> list[int]:
        """An SMS that arrived while nobody listened: stored, not announced."""
        with self._lock:
            indexes = []
            for pdu in encode_deliver(number, text):
                self.storage[self._next_index] = pdu
                indexes.append(self._next_index)
                self._next_index += 1
            return indexes

    @property
    def messages(self) -> list[SentMessage]:
        with self._lock:
            return [SentMessage(m.number, m.text, m.total) for m in reassemble(self.parts)]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for fd in (self._master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> "SimulatedModem":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ----------------------------------------------------------------------------------------------- serving

    def _send(self, text: str) -> None:
        if not self.silent:
            try:
                os.write(self._master, text.encode("ascii"))
            except OSError:
                pass

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self._master], [], [], 0.05)
                if not ready:
                    continue
                self._input += os.read(self._master, 4096)
            except OSError:
                return
            self._process()

    def _process(self) -> None:
        while True:
            if self._expect_pdu:
                end = self._input.find(CTRL_Z)
                cancel = self._input.find(ESC)
                if cancel >= 0 and (end < 0 or cancel < end):
                    self._input, self._expect_pdu = self._input[cancel + 1:], False
                    self._send("\r\nOK\r\n")
                    continue
                if end < 0:
                    return
                pdu, self._input = self._input[:end].decode("ascii", "replace").strip(), self._input[end + 1:]
                self._expect_pdu = False
                self._on_pdu(pdu)
                continue
            end = self._input.find(b"\r")
            if end < 0:
                return
            line, self._input = self._input[:end].decode("ascii", "replace").strip(), self._input[end + 1:]
            if line:
                self._on_command(line)

    def _on_pdu(self, pdu: str) -> None:
        with self._lock:
            failure = self._failures.pop(0) if self._failures else None
        if failure is not None:
            self._send(f"\r\n+CMS ERROR: {failure}\r\n")
            return
        try:
            part = decode_submit(pdu)
        except PduError:
            self._send("\r\n+CMS ERROR: 304\r\n")
            return
        with self._lock:
            self.parts.append(part)
            reference = len(self.parts) % 256
        self._send(f"\r\n+CMGS: {reference}\r\n\r\nOK\r\n")

    def _on_command(self, line: str) -> None:
        self.commands.append(line)
        if self.echo:
            self._send(line + "\r")
        answer = self._answer(line.upper() if not line.upper().startswith("AT+CMGS") else line)
        if answer is not None:
            self._send(answer)

    def _answer(self, command: str) -> str | None:
        ok = "\r\nOK\r\n"
        if command in ("AT", "AT+CMEE=1", "AT+CMGF=0") or command.startswith("AT+CNMI="):
            return ok
        if command in ("ATE0", "ATE1"):
            self.echo = command == "ATE1"
            return ok
        if command == "AT+CPIN?":
            return "\r\n+CPIN: READY\r\n" + ok
        if command == "AT+CREG?":
            return f"\r\n+CREG: 0,{1 if self.registered else 0}\r\n" + ok
        if command == "AT+CSQ":
            return f"\r\n+CSQ: {self.signal},99\r\n" + ok
        if match := re.fullmatch(r"AT\+CMGS=(\d+)", command):
            self._expect_pdu = True
            return "\r\n> "
        if match := re.fullmatch(r"AT\+CMGR=(\d+)", command):
            pdu = self.storage.get(int(match.group(1)))
            if pdu is None:
                return "\r\n+CMS ERROR: 321\r\n"
            return f"\r\n+CMGR: 0,,{len(pdu) // 2 - 1}\r\n{pdu}\r\n" + ok
        if match := re.fullmatch(r"AT\+CMGD=(\d+)", command):
            self.storage.pop(int(match.group(1)), None)
            return ok
        if re.fullmatch(r"AT\+CMGL=\d", command):
            listing = "".join(f"\r\n+CMGL: {i},0,,{len(p) // 2 - 1}\r\n{p}" for i, p in sorted(self.storage.items()))
            return listing + "\r\n" + ok
        return "\r\nERROR\r\n"
