"""WebSocket (RFC 6455), after the handshake, and the bus's answers."""

import base64
import hashlib
import json
import struct

from .constants import WEBSOCKET_GUID, WEBSOCKET_HEADERS, WEBSOCKET_MAX_MESSAGE
from .errors import BadRequest, UpgradeRequired

class WebSocketClose(Exception):
    def __init__(self, code, reason=''):
        super().__init__(code, reason)
        self.code, self.reason = code, reason

def websocket_accept(headers):
    """The Sec-WebSocket-Accept for a handshake, checked as odoo.addons.bus.websocket does."""
    missing = [name for name in WEBSOCKET_HEADERS if not headers.get(name)]
    if missing:
        raise BadRequest(f"Empty or missing header(s): {', '.join(missing)}")
    if headers['sec-websocket-version'] != '13':
        raise UpgradeRequired(headers=[('Sec-WebSocket-Version', '13')])
    key = headers['sec-websocket-key']
    try:
        decoded = base64.b64decode(key, validate=True)
    except ValueError:
        raise BadRequest('Sec-WebSocket-Key should be b64 encoded') from None
    if len(decoded) != 16:
        raise BadRequest('Sec-WebSocket-Key should be of length 16 once decoded')
    return base64.b64encode(hashlib.sha1((key + WEBSOCKET_GUID).encode()).digest()).decode()

class WebSocket:
    CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

    def __init__(self, rfile, wfile):
        self.rfile, self.wfile = rfile, wfile

    def serve(self, reply):
        """Answers each text message with reply(message), unless that is None, until the peer closes."""
        try:
            for message in self._messages():
                answer = reply(message)
                if answer is not None:
                    self._send(self.TEXT, answer.encode())
        except WebSocketClose as close:
            self._send(self.CLOSE, struct.pack('!H', close.code) + close.reason.encode())
        except OSError:
            pass  # the peer went away

    def _messages(self):
        parts, kind = [], None
        while True:
            fin, opcode, payload = self._read_frame()
            if opcode >= self.CLOSE:
                if not fin or len(payload) > 125:
                    raise WebSocketClose(1002, 'invalid control frame')
                if opcode == self.CLOSE:
                    self._send(self.CLOSE, payload[:2])  # echo the status code, then end
                    return
                if opcode == self.PING:
                    self._send(self.PONG, payload)
                elif opcode != self.PONG:
                    raise WebSocketClose(1002, 'unknown opcode')
                continue
            if (opcode == self.CONTINUATION) == (kind is None) or opcode not in (0, self.TEXT, self.BINARY):
                raise WebSocketClose(1002, 'unexpected frame')
            kind = kind or opcode
            parts.append(payload)
            if sum(map(len, parts)) > WEBSOCKET_MAX_MESSAGE:
                raise WebSocketClose(1009, 'message too big')
            if fin:
                data, binary, parts, kind = b''.join(parts), kind == self.BINARY, [], None
                if binary:
                    raise WebSocketClose(1003, 'binary messages are not supported')
                try:
                    text = data.decode('utf-8')
                except UnicodeDecodeError:
                    raise WebSocketClose(1007, 'invalid UTF-8') from None
                yield text

    def _read_frame(self):
        first, second = self._read(2)
        if first & 0x70:
            raise WebSocketClose(1002, 'reserved bits set')
        length = second & 0x7F
        if length == 126:
            length = struct.unpack('!H', self._read(2))[0]
        elif length == 127:
            length = struct.unpack('!Q', self._read(8))[0]
        if not second & 0x80:
            raise WebSocketClose(1002, 'client frames must be masked')
        if length > WEBSOCKET_MAX_MESSAGE:
            raise WebSocketClose(1009, 'message too big')
        mask = self._read(4)
        masked = self._read(length)
        key = (mask * (length // 4 + 1))[:length]
        payload = (int.from_bytes(masked, 'big') ^ int.from_bytes(key, 'big')).to_bytes(length, 'big')
        return bool(first & 0x80), first & 0x0F, payload

    def _read(self, size):
        data = self.rfile.read(size)
        if len(data) < size:
            raise ConnectionResetError('the peer closed the connection')
        return data

    def _send(self, opcode, payload):
        length = len(payload)
        if length < 126:
            header = struct.pack('!BB', 0x80 | opcode, length)
        elif length < 2 ** 16:
            header = struct.pack('!BBH', 0x80 | opcode, 126, length)
        else:
            header = struct.pack('!BBQ', 0x80 | opcode, 127, length)
        self.wfile.write(header + payload)
        self.wfile.flush()

def bus_reply(message, port):
    """Odoo's bus answers a subscription with nothing (notifications come later). Emulator-only: any
    other message is echoed with the port that answered, parsed as JSON when it is JSON."""
    try:
        payload = json.loads(message)
    except ValueError:
        payload = message
    if isinstance(payload, dict) and payload.get('event_name') == 'subscribe':
        return None
    return json.dumps({'echo': payload, 'port': port})
