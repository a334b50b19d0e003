package httpx

import "testing"

// BodyHash is FNV-1a 64: the comparison stage hashes the shadow's body with
// hash/fnv and compares it with this, so both must give the published
// values (the same vectors are checked in pkg/verdict).
func TestHashAddFNV1a64(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
	}{
		{"", 0xcbf29ce484222325},
		{"a", 0xaf63dc4c8601ec8c},
		{"foobar", 0x85944171f73967e8},
	} {
		if got := HashAdd(HashInit, []byte(tc.in)); got != tc.want {
			t.Errorf("HashAdd(%q) = %#x, want %#x", tc.in, got, tc.want)
		}
		// Streaming: in two parts, the same.
		if n := len(tc.in) / 2; HashAdd(HashAdd(HashInit, []byte(tc.in[:n])), []byte(tc.in[n:])) != tc.want {
			t.Errorf("HashAdd(%q) in two parts differs", tc.in)
		}
	}
}
