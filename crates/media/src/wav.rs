//! WAV reading for prompts (8 kHz mono or stereo; 16-bit PCM, A-law tag 6, µ-law
//! tag 7, or WAVE_FORMAT_EXTENSIBLE wrapping those) and writing of G.711 WAVs.
//! `hound` only reads PCM, so this small reader handles all three; recordings are
//! written with `hound`.

use std::io::Write;
use std::path::Path;

use crate::error::{MediaError, Result};
use crate::g711::Law;

/// Largest WAV file accepted (64 MiB ≈ 70 minutes of 8 kHz 16-bit mono).
pub const MAX_WAV_BYTES: u64 = 64 * 1024 * 1024;

/// The sample encoding of a WAV file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WavEncoding {
    /// 16-bit little-endian linear PCM (format tag 1).
    Pcm16,
    /// A-law (format tag 6).
    Alaw,
    /// µ-law (format tag 7).
    Ulaw,
}

/// A decoded WAV: mono 16-bit samples at 8 kHz plus what the file was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WavAudio {
    /// Encoding found in the file.
    pub encoding: WavEncoding,
    /// Channels in the file (stereo files are mixed down).
    pub channels: u16,
    /// Decoded mono samples.
    pub samples: Vec<i16>,
}

fn u16le(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes([*b.get(at)?, *b.get(at + 1)?]))
}
fn u32le(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
        *b.get(at + 2)?,
        *b.get(at + 3)?,
    ]))
}

/// Parses a WAV file held in memory.
pub fn parse_wav(b: &[u8]) -> Result<WavAudio> {
    if b.len() as u64 > MAX_WAV_BYTES {
        return Err(MediaError::Wav("file too large"));
    }
    if b.len() < 12 || &b[0..4] != b"RIFF" || &b[8..12] != b"WAVE" {
        return Err(MediaError::Wav("not a RIFF/WAVE file"));
    }
    let mut pos = 12usize;
    let mut fmt: Option<(WavEncoding, u16)> = None;
    let mut data: Option<&[u8]> = None;
    while pos + 8 <= b.len() {
        let id = &b[pos..pos + 4];
        let size = u32le(b, pos + 4).ok_or(MediaError::Wav("truncated chunk header"))? as usize;
        let body_start = pos + 8;
        // Streamed writers leave the data size as 0 or 0xFFFFFFFF: take the rest.
        let body_end = if id == b"data" && (size == 0 || size == u32::MAX as usize) {
            b.len()
        } else {
            body_start
                .checked_add(size)
                .filter(|e| *e <= b.len())
                .ok_or(MediaError::Wav("chunk runs past end of file"))?
        };
        let body = &b[body_start..body_end];
        match id {
            b"fmt " => {
                let mut tag = u16le(body, 0).ok_or(MediaError::Wav("fmt chunk too short"))?;
                let channels = u16le(body, 2).ok_or(MediaError::Wav("fmt chunk too short"))?;
                let rate = u32le(body, 4).ok_or(MediaError::Wav("fmt chunk too short"))?;
                let bits = u16le(body, 14).ok_or(MediaError::Wav("fmt chunk too short"))?;
                if tag == 0xFFFE {
                    // WAVE_FORMAT_EXTENSIBLE: the real tag starts the SubFormat GUID.
                    tag =
                        u16le(body, 24).ok_or(MediaError::Wav("extensible fmt chunk too short"))?;
                }
                let enc = match (tag, bits) {
                    (1, 16) => WavEncoding::Pcm16,
                    (6, 8) => WavEncoding::Alaw,
                    (7, 8) => WavEncoding::Ulaw,
                    _ => {
                        return Err(MediaError::Wav(
                            "unsupported format (need 16-bit PCM, A-law or µ-law)",
                        ));
                    }
                };
                if rate != 8000 {
                    return Err(MediaError::Wav("sample rate must be 8000 Hz"));
                }
                if channels == 0 || channels > 2 {
                    return Err(MediaError::Wav("only mono or stereo files"));
                }
                fmt = Some((enc, channels));
            }
            b"data" => data = Some(body),
            _ => {}
        }
        pos = body_end + (size & 1);
        if data.is_some() && fmt.is_some() {
            break;
        }
    }
    let (encoding, channels) = fmt.ok_or(MediaError::Wav("no fmt chunk before data"))?;
    let data = data.ok_or(MediaError::Wav("no data chunk"))?;
    let width = if encoding == WavEncoding::Pcm16 { 2 } else { 1 };
    let frame = width * channels as usize;
    let mut samples = Vec::with_capacity(data.len() / frame);
    for f in data.chunks_exact(frame) {
        let mut acc = 0i32;
        for ch in 0..channels as usize {
            let s = match encoding {
                WavEncoding::Pcm16 => i16::from_le_bytes([f[2 * ch], f[2 * ch + 1]]),
                WavEncoding::Alaw => Law::Alaw.decode(f[ch]),
                WavEncoding::Ulaw => Law::Ulaw.decode(f[ch]),
            };
            acc += s as i32;
        }
        samples.push((acc / channels as i32) as i16);
    }
    Ok(WavAudio {
        encoding,
        channels,
        samples,
    })
}

/// Reads and parses a WAV file, refusing files over [`MAX_WAV_BYTES`].
pub fn read_wav(path: &Path) -> Result<WavAudio> {
    let len = std::fs::metadata(path)?.len();
    if len > MAX_WAV_BYTES {
        return Err(MediaError::Wav("file too large"));
    }
    parse_wav(&std::fs::read(path)?)
}

/// Writes mono 8 kHz samples as a WAV in the given encoding.
pub fn write_wav(path: &Path, encoding: WavEncoding, samples: &[i16]) -> Result<()> {
    match encoding {
        WavEncoding::Pcm16 => {
            let spec = hound::WavSpec {
                channels: 1,
                sample_rate: 8000,
                bits_per_sample: 16,
                sample_format: hound::SampleFormat::Int,
            };
            let mut w = hound::WavWriter::create(path, spec)?;
            for &s in samples {
                w.write_sample(s)?;
            }
            w.finalize()?;
        }
        WavEncoding::Alaw | WavEncoding::Ulaw => {
            let (tag, law) = if encoding == WavEncoding::Alaw {
                (6u16, Law::Alaw)
            } else {
                (7u16, Law::Ulaw)
            };
            let n = samples.len() as u32;
            let mut out = Vec::with_capacity(58 + samples.len() + 1);
            out.extend_from_slice(b"RIFF");
            out.extend_from_slice(&(4 + 26 + 12 + 8 + n + (n & 1)).to_le_bytes());
            out.extend_from_slice(b"WAVEfmt ");
            out.extend_from_slice(&18u32.to_le_bytes());
            out.extend_from_slice(&tag.to_le_bytes());
            out.extend_from_slice(&1u16.to_le_bytes());
            out.extend_from_slice(&8000u32.to_le_bytes());
            out.extend_from_slice(&8000u32.to_le_bytes());
            out.extend_from_slice(&1u16.to_le_bytes());
            out.extend_from_slice(&8u16.to_le_bytes());
            out.extend_from_slice(&0u16.to_le_bytes());
            // Non-PCM formats carry a fact chunk with the sample count.
            out.extend_from_slice(b"fact");
            out.extend_from_slice(&4u32.to_le_bytes());
            out.extend_from_slice(&n.to_le_bytes());
            out.extend_from_slice(b"data");
            out.extend_from_slice(&n.to_le_bytes());
            out.extend(samples.iter().map(|&s| law.encode(s)));
            if n & 1 == 1 {
                out.push(0);
            }
            let mut f = std::fs::File::create(path)?;
            f.write_all(&out)?;
            f.sync_all()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("hotline-media-wav-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    fn ramp() -> Vec<i16> {
        (0..801i32).map(|i| ((i * 80) - 32000) as i16).collect()
    }

    #[test]
    fn pcm16_round_trip_via_hound() {
        let p = tmp("pcm.wav");
        write_wav(&p, WavEncoding::Pcm16, &ramp()).unwrap();
        let w = read_wav(&p).unwrap();
        assert_eq!(w.encoding, WavEncoding::Pcm16);
        assert_eq!(w.samples, ramp());
        // hound agrees on the header.
        let r = hound::WavReader::open(&p).unwrap();
        assert_eq!(r.spec().sample_rate, 8000);
        assert_eq!(r.len(), 801);
    }

    #[test]
    fn g711_wavs_round_trip_within_quantisation() {
        for enc in [WavEncoding::Alaw, WavEncoding::Ulaw] {
            let p = tmp(&format!("{enc:?}.wav"));
            write_wav(&p, enc, &ramp()).unwrap();
            let bytes = std::fs::read(&p).unwrap();
            assert_eq!(bytes.len() % 2, 0, "RIFF chunks are word aligned");
            assert_eq!(u32le(&bytes, 4).unwrap() as usize, bytes.len() - 8);
            let w = parse_wav(&bytes).unwrap();
            assert_eq!(w.encoding, enc);
            assert_eq!(w.samples.len(), 801);
            for (a, b) in w.samples.iter().zip(ramp()) {
                assert!((*a as i32 - b as i32).abs() <= 1024);
            }
        }
    }

    #[test]
    fn stereo_is_mixed_down_and_odd_chunks_are_skipped() {
        let mut b = Vec::new();
        b.extend_from_slice(b"RIFF\0\0\0\0WAVE");
        b.extend_from_slice(b"LIST\x03\0\0\0abc\0"); // odd-sized chunk + pad byte
        b.extend_from_slice(b"fmt \x10\0\0\0");
        b.extend_from_slice(&[1, 0, 2, 0]);
        b.extend_from_slice(&8000u32.to_le_bytes());
        b.extend_from_slice(&32000u32.to_le_bytes());
        b.extend_from_slice(&[4, 0, 16, 0]);
        b.extend_from_slice(b"data\x08\0\0\0");
        for s in [100i16, 300, -50, -150] {
            b.extend_from_slice(&s.to_le_bytes());
        }
        let w = parse_wav(&b).unwrap();
        assert_eq!(w.channels, 2);
        assert_eq!(w.samples, vec![200, -100]);
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_after_a_riff_header_never_panic(tail in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let mut b = b"RIFF\0\0\0\0WAVE".to_vec();
            b.extend(tail);
            let _ = parse_wav(&b);
        }
    }

    #[test]
    fn bad_files_are_errors_not_panics() {
        assert!(parse_wav(b"").is_err());
        assert!(parse_wav(b"RIFF\0\0\0\0WAVE").is_err());
        assert!(parse_wav(b"RIFF\0\0\0\0WAVEfmt \xff\xff\0\0").is_err());
        let p = tmp("rate.wav");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 16000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&p, spec).unwrap();
        w.write_sample(0i16).unwrap();
        w.finalize().unwrap();
        assert!(matches!(read_wav(&p), Err(MediaError::Wav(_))));
        let good = {
            let p = tmp("good.wav");
            write_wav(&p, WavEncoding::Ulaw, &ramp()).unwrap();
            std::fs::read(&p).unwrap()
        };
        for cut in 0..good.len().min(80) {
            let _ = parse_wav(&good[..cut]);
        }
    }
}
