// Package testenv builds the mirror lab that shadowtap's privileged tests and
// demo run in: network namespaces joined by veth pairs, with tc mirroring
// production's traffic into a kernel VXLAN device that sends to a receiver
// namespace, as an AWS VPC Traffic Mirroring session does. It stands in front
// of the whole data path: what the lab's client and server log is what
// shadowtap must rebuild from the mirror.
//
// In a test:
//
//	l := testenv.NewLab(t, testenv.Options{})          // skips without root; removed in t.Cleanup
//	srv, _ := testenv.StartHTTPServer(ctx, l, l.ProdNS, ":8080")
//	conv, _ := l.KeepAlive(ctx, l.ClientNS, testenv.HostPort(l.ProdAddr4, 8080),
//		testenv.Request{Target: "/size/200000"})
//	// conv.Sent / conv.Received: the exact bytes each way; srv.Exchanges(): the server's log.
//	// Mirror copies arrive in l.RecvNS on l.RecvIface as VXLAN (VNI l.VNI) from l.MirrorSource().
//
// Sockets and netlink calls go into a namespace with Lab.Do (network
// namespace only, so bpffs pins stay visible); external programs with
// Lab.Command (ip netns exec) or Lab.NsenterCommand. By hand and in the demo:
// scripts/lab.sh up|status|down|serve|sweep.
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
