package tds

import (
	"encoding/binary"
	"fmt"
	"unicode/utf16"
	"unicode/utf8"
)

// wireReader decodes little-endian TDS fields from an in-memory message. It
// never panics: reading past the end records a sticky error and returns zero
// values, so decoders check err() once after a group of reads.
type wireReader struct {
	b   []byte
	off int
	e   error
}

func newWireReader(b []byte) *wireReader { return &wireReader{b: b} }

func (r *wireReader) err() error { return r.e }

func (r *wireReader) remaining() int { return len(r.b) - r.off }

func (r *wireReader) fail(format string, args ...any) {
	if r.e == nil {
		r.e = fmt.Errorf("%w: %s", ErrProtocol, fmt.Sprintf(format, args...))
	}
}

// bytes returns the next n bytes without copying.
func (r *wireReader) bytes(n int) []byte {
	if r.e != nil {
		return nil
	}
	if n < 0 || n > r.remaining() {
		r.fail("need %d bytes at offset %d, message has %d", n, r.off, len(r.b))
		return nil
	}
	b := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return b
}

func (r *wireReader) u8() uint8 {
	b := r.bytes(1)
	if b == nil {
		return 0
	}
	return b[0]
}

func (r *wireReader) u16() uint16 {
	b := r.bytes(2)
	if b == nil {
		return 0
	}
	return binary.LittleEndian.Uint16(b)
}

func (r *wireReader) u32() uint32 {
	b := r.bytes(4)
	if b == nil {
		return 0
	}
	return binary.LittleEndian.Uint32(b)
}

func (r *wireReader) u64() uint64 {
	b := r.bytes(8)
	if b == nil {
		return 0
	}
	return binary.LittleEndian.Uint64(b)
}

// bVarChar reads a B_VARCHAR: a character count byte and UTF-16LE text.
func (r *wireReader) bVarChar() string {
	n := int(r.u8())
	return decodeUTF16(r.bytes(2 * n))
}

// usVarChar reads a US_VARCHAR: a u16 character count and UTF-16LE text.
func (r *wireReader) usVarChar() string {
	n := int(r.u16())
	return decodeUTF16(r.bytes(2 * n))
}

// decodeUTF16 converts UTF-16LE bytes to a Go string. Unpaired surrogates
// become U+FFFD; a trailing odd byte is ignored (callers validate lengths).
func decodeUTF16(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	ascii := true
	for i := 0; i+1 < len(b); i += 2 {
		if b[i+1] != 0 || b[i] >= 0x80 {
			ascii = false
			break
		}
	}
	if ascii {
		s := make([]byte, len(b)/2)
		for i := range s {
			s[i] = b[2*i]
		}
		return string(s)
	}
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	return string(utf16.Decode(u))
}

// utf16Len is the number of UTF-16 code units needed for s.
func utf16Len(s string) int {
	n := 0
	for _, c := range s {
		if c >= 0x10000 {
			n += 2
		} else {
			n++
		}
	}
	return n
}

// appendUTF16 appends s as UTF-16LE. Invalid UTF-8 becomes U+FFFD.
func appendUTF16(b []byte, s string) []byte {
	for _, c := range s {
		if c < 0x10000 {
			b = append(b, byte(c), byte(c>>8))
			continue
		}
		r1, r2 := utf16.EncodeRune(c)
		b = append(b, byte(r1), byte(r1>>8), byte(r2), byte(r2>>8))
	}
	return b
}

// truncateUTF16 shortens s so that it needs at most max UTF-16 code units,
// never splitting a surrogate pair.
func truncateUTF16(s string, max int) string {
	n := 0
	for i, c := range s {
		w := 1
		if c >= 0x10000 {
			w = 2
		}
		if n+w > max {
			return s[:i]
		}
		n += w
	}
	return s
}

// appendBVarChar appends a B_VARCHAR, truncating s to 255 code units.
func appendBVarChar(b []byte, s string) []byte {
	s = truncateUTF16(s, 255)
	b = append(b, byte(utf16Len(s)))
	return appendUTF16(b, s)
}

// appendUSVarChar appends a US_VARCHAR, truncating s to max code units
// (at most 65535).
func appendUSVarChar(b []byte, s string, max int) []byte {
	if max > 0xFFFF {
		max = 0xFFFF
	}
	s = truncateUTF16(s, max)
	b = binary.LittleEndian.AppendUint16(b, uint16(utf16Len(s)))
	return appendUTF16(b, s)
}

// cp1252High maps bytes 0x80-0x9F of Windows-1252 to Unicode (0 = unused).
var cp1252High = [32]rune{
	0x20AC, 0, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,
	0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0, 0x017D, 0,
	0, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
	0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0, 0x017E, 0x0178,
}

// decodeSingleByte turns VARCHAR/CHAR bytes into a string. go-mssqldb sends
// Go strings (UTF-8) in VARCHAR parameters, so valid UTF-8 is taken as is;
// anything else is read as Windows-1252, the code page of the default
// collation.
func decodeSingleByte(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	rs := make([]rune, len(b))
	for i, c := range b {
		switch {
		case c >= 0x80 && c < 0xA0 && cp1252High[c-0x80] != 0:
			rs[i] = cp1252High[c-0x80]
		default:
			rs[i] = rune(c)
		}
	}
	return string(rs)
}

// appendCP1252 appends s encoded as Windows-1252; characters outside the
// code page become '?', as SQL Server does when converting to VARCHAR.
func appendCP1252(b []byte, s string) []byte {
	for _, c := range s {
		switch {
		case c < 0x80 || (c >= 0xA0 && c <= 0xFF):
			b = append(b, byte(c))
		default:
			q := byte('?')
			for i, h := range cp1252High {
				if h == c && h != 0 {
					q = byte(0x80 + i)
					break
				}
			}
			b = append(b, q)
		}
	}
	return b
}

// cp1252Len is the number of bytes appendCP1252 produces for s.
func cp1252Len(s string) int { return utf8.RuneCountInString(s) }
