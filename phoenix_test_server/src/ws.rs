//! RFC 6455 framing for the server side: read masked client frames (reassembling fragments), and
//! write unmasked server frames. The reader and the writer work on separate clones of the TCP
//! stream, so one thread can block in `read` while another writes.

use std::io::{self, Read, Write};

/// A complete message or control frame from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Incoming {
    Text(Vec<u8>),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong,
    /// Close frame: the status code (None if the frame had no body).
    Close(Option<u16>),
}

/// What went wrong while reading.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The socket read timed out (no bytes for the configured timeout).
    Timeout,
    /// The peer closed the TCP connection, or the socket failed.
    Gone,
    /// A framing violation; close with this code (1002 protocol error, 1009 too big).
    Protocol(u16),
}

/// Largest message accepted (Bandit's default is unlimited; this only guards memory).
const MAX_MESSAGE: usize = 64 << 20;

/// Buffered frame reader over the read half of a connection.
pub(crate) struct FrameReader {
    /// Storage; bytes `start..end` are received and not yet parsed.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Opcode (1 or 2) and data of a fragmented message being assembled.
    partial: Option<(u8, Vec<u8>)>,
}

impl FrameReader {
    /// Starts with bytes already read past the HTTP request head.
    pub(crate) fn new(initial: Vec<u8>) -> Self {
        let end = initial.len();
        let mut buf = initial;
        buf.resize(end.max(64 * 1024), 0);
        FrameReader {
            buf,
            start: 0,
            end,
            partial: None,
        }
    }

    /// Reads more bytes from the socket into the buffer.
    fn fill(&mut self, stream: &mut impl Read) -> Result<(), ReadError> {
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                let n = self.buf.len() * 2;
                self.buf.resize(n, 0);
            }
        }
        match stream.read(&mut self.buf[self.end..]) {
            Ok(0) => Err(ReadError::Gone),
            Ok(n) => {
                self.end += n;
                Ok(())
            }
            Err(e) => match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Err(ReadError::Timeout),
                io::ErrorKind::Interrupted => Ok(()),
                _ => Err(ReadError::Gone),
            },
        }
    }

    /// Parses one frame from the buffer if it is complete.
    fn parse_frame(&mut self) -> Result<Option<(bool, u8, Vec<u8>)>, ReadError> {
        let b = &self.buf[self.start..self.end];
        if b.len() < 2 {
            return Ok(None);
        }
        let fin = b[0] & 0x80 != 0;
        if b[0] & 0x70 != 0 {
            return Err(ReadError::Protocol(1002));
        }
        let opcode = b[0] & 0x0f;
        let masked = b[1] & 0x80 != 0;
        if !masked {
            return Err(ReadError::Protocol(1002));
        }
        let (len, mut off) = match b[1] & 0x7f {
            126 => {
                if b.len() < 4 {
                    return Ok(None);
                }
                (u16::from_be_bytes([b[2], b[3]]) as u64, 4)
            }
            127 => {
                if b.len() < 10 {
                    return Ok(None);
                }
                let mut a = [0u8; 8];
                a.copy_from_slice(&b[2..10]);
                (u64::from_be_bytes(a), 10)
            }
            n => (n as u64, 2),
        };
        if len > MAX_MESSAGE as u64 {
            return Err(ReadError::Protocol(1009));
        }
        let len = len as usize;
        if b.len() < off + 4 + len {
            return Ok(None);
        }
        let mask = [b[off], b[off + 1], b[off + 2], b[off + 3]];
        off += 4;
        let mut payload = b[off..off + len].to_vec();
        for (i, byte) in payload.iter_mut().enumerate() {
            *byte ^= mask[i & 3];
        }
        self.start += off + len;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        Ok(Some((fin, opcode, payload)))
    }

    /// Reads the next complete message or control frame.
    pub(crate) fn next(&mut self, stream: &mut impl Read) -> Result<Incoming, ReadError> {
        loop {
            let Some((fin, opcode, payload)) = self.parse_frame()? else {
                self.fill(stream)?;
                continue;
            };
            match opcode {
                0x8 => {
                    let code =
                        (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                    return Ok(Incoming::Close(code));
                }
                0x9 | 0xA if !fin || payload.len() > 125 => return Err(ReadError::Protocol(1002)),
                0x9 => return Ok(Incoming::Ping(payload)),
                0xA => return Ok(Incoming::Pong),
                0x1 | 0x2 => {
                    if self.partial.is_some() {
                        return Err(ReadError::Protocol(1002));
                    }
                    if fin {
                        return Ok(if opcode == 1 {
                            Incoming::Text(payload)
                        } else {
                            Incoming::Binary(payload)
                        });
                    }
                    self.partial = Some((opcode, payload));
                }
                0x0 => {
                    let Some((op, mut data)) = self.partial.take() else {
                        return Err(ReadError::Protocol(1002));
                    };
                    data.extend_from_slice(&payload);
                    if data.len() > MAX_MESSAGE {
                        return Err(ReadError::Protocol(1009));
                    }
                    if fin {
                        return Ok(if op == 1 {
                            Incoming::Text(data)
                        } else {
                            Incoming::Binary(data)
                        });
                    }
                    self.partial = Some((op, data));
                }
                _ => return Err(ReadError::Protocol(1002)),
            }
        }
    }
}

/// Writes one unmasked server frame (FIN set).
pub(crate) fn write_frame(out: &mut impl Write, opcode: u8, payload: &[u8]) -> io::Result<()> {
    let mut head = [0u8; 10];
    head[0] = 0x80 | opcode;
    let n = payload.len();
    let head_len = if n < 126 {
        head[1] = n as u8;
        2
    } else if n <= u16::MAX as usize {
        head[1] = 126;
        head[2..4].copy_from_slice(&(n as u16).to_be_bytes());
        4
    } else {
        head[1] = 127;
        head[2..10].copy_from_slice(&(n as u64).to_be_bytes());
        10
    };
    out.write_all(&head[..head_len])?;
    out.write_all(payload)
}

/// Writes a close frame with a status code and reason.
pub(crate) fn write_close(out: &mut impl Write, code: u16, reason: &str) -> io::Result<()> {
    let mut body = code.to_be_bytes().to_vec();
    body.extend_from_slice(reason.as_bytes());
    write_frame(out, 0x8, &body)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn masked(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut f = vec![if fin { 0x80 } else { 0 } | opcode];
        if payload.len() < 126 {
            f.push(0x80 | payload.len() as u8);
        } else {
            f.push(0x80 | 126);
            f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        f
    }

    #[test]
    fn reads_fragmented_and_control_frames() {
        let mut wire = masked(1, false, b"hel");
        wire.extend(masked(9, true, b"p"));
        wire.extend(masked(0, true, b"lo"));
        wire.extend(masked(2, true, &[7u8; 300]));
        wire.extend(masked(8, true, &1000u16.to_be_bytes()));
        let mut r = FrameReader::new(Vec::new());
        let mut s = &wire[..];
        assert_eq!(r.next(&mut s).unwrap(), Incoming::Ping(b"p".to_vec()));
        assert_eq!(r.next(&mut s).unwrap(), Incoming::Text(b"hello".to_vec()));
        assert_eq!(r.next(&mut s).unwrap(), Incoming::Binary(vec![7u8; 300]));
        assert_eq!(r.next(&mut s).unwrap(), Incoming::Close(Some(1000)));
        assert!(matches!(r.next(&mut s), Err(ReadError::Gone)));
    }

    #[test]
    fn rejects_unmasked_frames() {
        let mut r = FrameReader::new(vec![0x81, 0x01, b'x']);
        assert!(matches!(
            r.next(&mut &b""[..]),
            Err(ReadError::Protocol(1002))
        ));
    }

    #[test]
    fn writes_length_forms() {
        for n in [0usize, 125, 126, 65535, 65536] {
            let mut out = Vec::new();
            write_frame(&mut out, 2, &vec![0u8; n]).unwrap();
            let head = match n {
                0..=125 => 2,
                126..=65535 => 4,
                _ => 10,
            };
            assert_eq!(out.len(), head + n);
        }
    }
}
