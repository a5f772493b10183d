//! Framing: newline-delimited request lines in, reply lines out. Nothing above this file sees bytes.
//!
//! Reading uses a fixed buffer and keeps at most `limit` bytes of one line: a longer line is
//! reported as [`Frame::TooLong`] as soon as it passes the limit, and the rest of it is read and
//! thrown away up to the next newline, so an oversized line never sits in memory whole.

use std::io;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

/// Bytes read from the socket at a time.
const READ_BUFFER: usize = 16 * 1024;

/// What the next read produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// One request line, without its newline (and without a trailing `\r`).
    Line(Vec<u8>),
    /// The current line passed the limit; its remainder is being discarded.
    TooLong,
    /// The peer closed its side. An unfinished last line is dropped.
    Eof,
}

pub struct FrameReader<R> {
    reader: BufReader<R>,
    line: Vec<u8>,
    limit: usize,
    /// Inside an oversized line: drop bytes until the next newline.
    discarding: bool,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(inner: R, limit: usize) -> Self {
        FrameReader {
            reader: BufReader::with_capacity(READ_BUFFER, inner),
            line: Vec::new(),
            limit,
            discarding: false,
        }
    }

    /// Reads the next non-blank line. Cancel-safe: bytes already consumed stay in `self.line`.
    pub async fn read_frame(&mut self) -> io::Result<Frame> {
        loop {
            let buf = self.reader.fill_buf().await?;
            if buf.is_empty() {
                self.line.clear();
                return Ok(Frame::Eof);
            }
            let (chunk, line_ends) = match find_newline(buf) {
                Some(i) => (&buf[..i], true),
                None => (buf, false),
            };
            let chunk_len = chunk.len();
            let mut overflowed = false;
            if !self.discarding {
                if self.line.len() + chunk_len > self.limit {
                    self.discarding = true;
                    overflowed = true;
                    self.line = Vec::new();
                } else {
                    self.line.extend_from_slice(chunk);
                }
            }
            self.reader.consume(chunk_len + usize::from(line_ends));
            if overflowed {
                if line_ends {
                    self.discarding = false;
                }
                return Ok(Frame::TooLong);
            }
            if line_ends {
                if self.discarding {
                    self.discarding = false;
                    continue;
                }
                let mut line = std::mem::take(&mut self.line);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Ok(Frame::Line(line));
            }
        }
    }
}

fn find_newline(buf: &[u8]) -> Option<usize> {
    buf.iter().position(|b| *b == b'\n')
}

/// Writes reply lines, gathering those already waiting into one write.
pub struct FrameWriter<W> {
    writer: W,
    pending: Vec<u8>,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    pub fn new(writer: W) -> Self {
        FrameWriter {
            writer,
            pending: Vec::with_capacity(READ_BUFFER),
        }
    }

    pub fn queue(&mut self, line: &[u8]) {
        self.pending.extend_from_slice(line);
    }

    pub fn has_room(&self) -> bool {
        self.pending.len() < READ_BUFFER
    }

    pub async fn flush(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            self.writer.write_all(&self.pending).await?;
            self.pending.clear();
            if self.pending.capacity() > 4 * READ_BUFFER {
                self.pending.shrink_to(READ_BUFFER);
            }
        }
        Ok(())
    }

    pub async fn shutdown(&mut self) -> io::Result<()> {
        self.writer.shutdown().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn frames(input: &[u8], limit: usize) -> Vec<Frame> {
        let mut reader = FrameReader::new(input, limit);
        let mut out = Vec::new();
        loop {
            let frame = reader.read_frame().await.unwrap();
            let end = frame == Frame::Eof;
            out.push(frame);
            if end {
                return out;
            }
        }
    }

    fn line(s: &str) -> Frame {
        Frame::Line(s.as_bytes().to_vec())
    }

    #[tokio::test]
    async fn lines_blank_lines_and_crlf() {
        assert_eq!(
            frames(b"a\n\n  \nb\r\nhalf", 10).await,
            vec![line("a"), line("b"), Frame::Eof]
        );
    }

    #[tokio::test]
    async fn an_overlong_line_is_reported_once_and_skipped() {
        let mut input = vec![b'x'; 100_000];
        input.extend_from_slice(b"\nok\n");
        assert_eq!(frames(&input, 1024).await, vec![Frame::TooLong, line("ok"), Frame::Eof]);
        assert_eq!(
            frames(b"12345\nabc\n", 5).await,
            vec![line("12345"), line("abc"), Frame::Eof]
        );
        assert_eq!(
            frames(b"123456\nabc\n", 5).await,
            vec![Frame::TooLong, line("abc"), Frame::Eof]
        );
        // Garbage with no newline at all: reported, then the end.
        assert_eq!(frames(&[0xff; 50_000], 1024).await, vec![Frame::TooLong, Frame::Eof]);
    }
}
