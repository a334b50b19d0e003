package replay

import (
	"bytes"

	"github.com/shadowtap/shadowtap/pkg/httpx"
)

// sampleSeed salts the sampling hash. It is fixed so that every receiver
// behind a load balancer, and every restart, makes the same decision for the
// same key.
const sampleSeed = "shadowtap-sample-v1"

// sampleScale is the resolution of SamplePercent: 1e6 buckets = 0.0001 %.
const sampleScale = 1_000_000

// splitTarget returns the path and the query (without '?') of a request
// target. An absolute-form target is reduced to its path; authority is its
// host part ("" for origin form).
func splitTarget(target []byte) (authority, path, query []byte) {
	if i := bytes.Index(target, []byte("://")); i > 0 && target[0] != '/' {
		rest := target[i+3:]
		end := bytes.IndexAny(rest, "/?")
		if end < 0 {
			return rest, []byte("/"), nil
		}
		authority, target = rest[:end], rest[end:]
		if target[0] == '?' {
			return authority, []byte("/"), target[1:]
		}
	}
	if i := bytes.IndexByte(target, '?'); i >= 0 {
		return authority, target[:i], target[i+1:]
	}
	return authority, target, nil
}

// hashKey is the sampling hash of a key.
func hashKey(key []byte) uint64 { return hashSeeded(sampleSeed, key) }

// hashSeeded is FNV-1a 64 over the seed and the key, finished with the
// splitmix64 mixer so that the low bits are well spread.
func hashSeeded(seed string, key []byte) uint64 {
	const (
		offset = 14695981039346656037
		prime  = 1099511628211
	)
	h := uint64(offset)
	for i := 0; i < len(seed); i++ {
		h ^= uint64(seed[i])
		h *= prime
	}
	for _, c := range key {
		h ^= uint64(c)
		h *= prime
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

// sampledIn makes the consistent sampling decision for one key.
func sampledIn(key []byte, threshold uint64) bool {
	return hashKey(key)%sampleScale < threshold
}

// sampleKeyOf returns the bytes the sampling decision is keyed on, and
// whether it fell back to the client address because the configured header
// or cookie is absent. buf is scratch space for the client address.
func sampleKeyOf(k SampleKey, ex *httpx.Exchange, buf []byte) (key []byte, fallback bool) {
	switch k.Kind {
	case SampleHeader:
		if v := httpx.Get(ex.Req.Fields, k.Name); len(v) > 0 {
			return v, false
		}
	case SampleCookie:
		if v, ok := cookieValue(ex.Req.Fields, k.Name); ok {
			return v, false
		}
	case SampleXFF:
		if v := lastForwardedFor(ex.Req.Fields); len(v) > 0 {
			return v, false
		}
	default:
		return ex.Conn.Client.Addr().Unmap().AppendTo(buf[:0]), false
	}
	return ex.Conn.Client.Addr().Unmap().AppendTo(buf[:0]), true
}

// lastForwardedFor returns the last address of the last X-Forwarded-For
// header: the one the nearest proxy (the load balancer) appended.
func lastForwardedFor(fields []httpx.Field) []byte {
	for i := len(fields) - 1; i >= 0; i-- {
		if !bytes.EqualFold(fields[i].Name, []byte("X-Forwarded-For")) {
			continue
		}
		v := fields[i].Value
		if j := bytes.LastIndexByte(v, ','); j >= 0 {
			v = v[j+1:]
		}
		if v = bytes.TrimSpace(v); len(v) > 0 {
			return v
		}
	}
	return nil
}

// cookieValue finds the named cookie in the request's Cookie headers.
func cookieValue(fields []httpx.Field, name string) ([]byte, bool) {
	for i := range fields {
		if !bytes.EqualFold(fields[i].Name, []byte("Cookie")) {
			continue
		}
		v := fields[i].Value
		for len(v) > 0 {
			var pair []byte
			if j := bytes.IndexByte(v, ';'); j >= 0 {
				pair, v = v[:j], v[j+1:]
			} else {
				pair, v = v, nil
			}
			pair = bytes.TrimSpace(pair)
			n, val, ok := bytes.Cut(pair, []byte("="))
			if ok && string(bytes.TrimSpace(n)) == name {
				val = bytes.TrimSpace(val)
				if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
					val = val[1 : len(val)-1]
				}
				return val, len(val) > 0
			}
		}
	}
	return nil, false
}
