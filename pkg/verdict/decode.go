package verdict

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
)

// DefaultMaxDecodedBytes bounds what one side's body may decode to (16 MiB):
// a compressed body that inflates beyond it (a zip bomb, or just a large
// answer) is not compared and the exchange's body counts as unverified.
const DefaultMaxDecodedBytes = 16 << 20

// Reasons a body was not verified (Result.BodyUnverified).
const (
	UnverifiedIncomplete = "incomplete" // a side's body exceeded the compare limit and the hashes cannot tell
	UnverifiedEncoding   = "encoding"   // a Content-Encoding is unknown or its data is corrupt
	UnverifiedTooLarge   = "too_large"  // a body decodes to more than the bound, or is JSON of too many values
)

var (
	errUnknownCoding = errors.New("unknown content coding")
	errTooLarge      = errors.New("decoded body exceeds the bound")
)

// decodeError is why a body could not be decoded; reason is one of the
// Unverified* constants.
type decodeError struct {
	reason string
	err    error
}

func (e *decodeError) Error() string { return e.reason + ": " + e.err.Error() }
func (e *decodeError) Unwrap() error { return e.err }

// decoders holds reusable decompressors. The pools are caches with no
// meaning of their own (any item is as good as a new one), so they are the
// one kind of package-level state this package keeps: comparisons run on
// several goroutines and a zstd or brotli decoder costs far more to build
// than to reset.
var decoders = struct {
	gzip, flate, zlib, brotli, zstd, buf sync.Pool
}{}

// contentCodings splits a Content-Encoding header into its codings, lower
// case, in the order they were applied, without identity.
func contentCodings(h []string) []string {
	var out []string
	for _, line := range h {
		for c := range strings.SplitSeq(line, ",") {
			c = strings.ToLower(strings.TrimSpace(c))
			if c == "" || c == "identity" {
				continue
			}
			out = append(out, c)
		}
	}
	return out
}

// sameCodings says whether two responses name the same content codings.
func sameCodings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if canonCoding(a[i]) != canonCoding(b[i]) {
			return false
		}
	}
	return true
}

func canonCoding(c string) string {
	switch c {
	case "x-gzip":
		return "gzip"
	}
	return c
}

// decodeBody removes the content codings (applied in the order given, so
// removed last first) from body. Its output is at most limit bytes; beyond
// it the error's reason is UnverifiedTooLarge. The returned release func
// gives pooled memory back; the result must not be used after it.
func decodeBody(body []byte, codings []string, limit int64) (out []byte, release func(), err error) {
	release = func() {}
	if len(codings) == 0 {
		if int64(len(body)) > limit {
			return nil, release, &decodeError{UnverifiedTooLarge, errTooLarge}
		}
		return body, release, nil
	}
	if len(codings) > 4 {
		return nil, release, &decodeError{UnverifiedEncoding, fmt.Errorf("%d content codings: at most 4 are decoded", len(codings))}
	}
	var bufs []*bytes.Buffer
	release = func() {
		for _, b := range bufs {
			if b.Cap() <= 4*DefaultMaxDecodedBytes {
				b.Reset()
				decoders.buf.Put(b)
			}
		}
		bufs = nil
	}
	cur := body
	for i := len(codings) - 1; i >= 0; i-- {
		buf, _ := decoders.buf.Get().(*bytes.Buffer)
		if buf == nil {
			buf = new(bytes.Buffer)
		}
		bufs = append(bufs, buf)
		if err := decodeOne(buf, cur, canonCoding(codings[i]), limit); err != nil {
			release()
			return nil, func() {}, err
		}
		cur = buf.Bytes()
	}
	return cur, release, nil
}

// decodeOne decodes one coding of src into dst, at most limit bytes.
func decodeOne(dst *bytes.Buffer, src []byte, coding string, limit int64) error {
	wrap := func(err error) error {
		if errors.Is(err, errTooLarge) || errors.Is(err, zstd.ErrDecoderSizeExceeded) {
			return &decodeError{UnverifiedTooLarge, fmt.Errorf("%s: %w", coding, err)}
		}
		return &decodeError{UnverifiedEncoding, fmt.Errorf("%s: %w", coding, err)}
	}
	switch coding {
	case "gzip":
		zr, _ := decoders.gzip.Get().(*gzip.Reader)
		var err error
		if zr == nil {
			zr, err = gzip.NewReader(bytes.NewReader(src))
		} else {
			err = zr.Reset(bytes.NewReader(src))
		}
		if err != nil {
			return wrap(err)
		}
		defer decoders.gzip.Put(zr)
		return wrap0(wrap, copyBounded(dst, zr, limit))
	case "deflate":
		// RFC 9110 says deflate is zlib (RFC 1950); some servers send raw
		// deflate (RFC 1951). A zlib stream starts with a header whose
		// method is 8 and whose first two bytes are a multiple of 31.
		if len(src) >= 2 && src[0]&0x0f == 8 && (uint16(src[0])<<8|uint16(src[1]))%31 == 0 {
			zr, _ := decoders.zlib.Get().(io.ReadCloser)
			var err error
			if zr == nil {
				zr, err = zlib.NewReader(bytes.NewReader(src))
			} else {
				err = zr.(zlib.Resetter).Reset(bytes.NewReader(src), nil)
			}
			if err == nil {
				defer decoders.zlib.Put(zr)
				err = copyBounded(dst, zr, limit)
				if err == nil || errors.Is(err, errTooLarge) {
					return wrap0(wrap, err)
				}
			}
			dst.Reset() // not zlib after all: try raw deflate
		}
		fr, _ := decoders.flate.Get().(io.ReadCloser)
		if fr == nil {
			fr = flate.NewReader(bytes.NewReader(src))
		} else if err := fr.(flate.Resetter).Reset(bytes.NewReader(src), nil); err != nil {
			return wrap(err)
		}
		defer decoders.flate.Put(fr)
		return wrap0(wrap, copyBounded(dst, fr, limit))
	case "br":
		br, _ := decoders.brotli.Get().(*brotli.Reader)
		if br == nil {
			br = brotli.NewReader(bytes.NewReader(src))
		} else if err := br.Reset(bytes.NewReader(src)); err != nil {
			return wrap(err)
		}
		defer decoders.brotli.Put(br)
		return wrap0(wrap, copyBounded(dst, br, limit))
	case "zstd":
		// Pooled decoders are built for the default bound; a larger bound
		// gets a decoder of its own.
		var zd *zstd.Decoder
		if limit <= DefaultMaxDecodedBytes {
			zd, _ = decoders.zstd.Get().(*zstd.Decoder)
		}
		if zd == nil {
			var err error
			zd, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
				zstd.WithDecoderMaxMemory(uint64(max(limit, DefaultMaxDecodedBytes))))
			if err != nil {
				return wrap(err)
			}
		}
		if limit <= DefaultMaxDecodedBytes {
			defer decoders.zstd.Put(zd)
		} else {
			defer zd.Close()
		}
		out, err := zd.DecodeAll(src, dst.AvailableBuffer())
		if err != nil {
			return wrap(err)
		}
		if int64(len(out)) > limit {
			return wrap(errTooLarge)
		}
		dst.Write(out)
		return nil
	default:
		return &decodeError{UnverifiedEncoding, fmt.Errorf("%q: %w", coding, errUnknownCoding)}
	}
}

func wrap0(wrap func(error) error, err error) error {
	if err == nil {
		return nil
	}
	return wrap(err)
}

// copyBounded reads r to its end into dst, failing with errTooLarge beyond
// limit bytes.
func copyBounded(dst *bytes.Buffer, r io.Reader, limit int64) error {
	n, err := dst.ReadFrom(io.LimitReader(r, limit+1))
	if err != nil {
		return err
	}
	if n > limit {
		return errTooLarge
	}
	return nil
}
