// Package testenv builds the mirror lab that shadowtap's privileged tests and
// demo run in: network namespaces joined by veth pairs, with tc mirroring
// production's traffic into a kernel VXLAN device that sends to a receiver
// namespace, as an AWS VPC Traffic Mirroring session does.
package testenv

import (
	"os"
	"testing"
)

// RequireRootEnv is the environment variable that turns a privileged test's
// skip into a failure. .ci/run sets it.
const RequireRootEnv = "SHADOWTAP_REQUIRE_ROOT"

// RequireRoot skips t when the process is not root, unless
// SHADOWTAP_REQUIRE_ROOT=1, in which case the test fails instead.
func RequireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv(RequireRootEnv) == "1" {
		tb.Fatalf("this test needs root, and %s=1 forbids skipping it", RequireRootEnv)
	}
	tb.Skip("needs root (set " + RequireRootEnv + "=1 to make this a failure)")
}
