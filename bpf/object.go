package bpf

import (
	"crypto/sha256"
	"encoding/hex"
)

// ObjectSHA256 is the SHA-256 of the compiled BPF object embedded in this
// binary (shadowtap_bpfel.o): `shadowtap version` and the
// shadowtap_build_info metric show it, so an operator can tell which
// program a receiver loads.
func ObjectSHA256() string {
	sum := sha256.Sum256(_ShadowtapBytes)
	return hex.EncodeToString(sum[:])
}
