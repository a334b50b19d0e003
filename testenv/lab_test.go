package testenv

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func labNamespacesLeft(t *testing.T, name string) []string {
	t.Helper()
	ents, err := os.ReadDir(netnsDir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatalf("listing %s: %v", netnsDir, err)
	}
	var left []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), name+"-") {
			left = append(left, e.Name())
		}
	}
	return left
}

func TestUpDown(t *testing.T) {
	RequireRoot(t)
	tests := []struct {
		name string
		opt  Options
	}{
		{"defaults", Options{}},
		{"outer IPv6 and custom VNI", Options{OuterIPv6: true, VNI: 0xabcdef, VXLANPort: 4790}},
		{"small MTUs", Options{ClientMTU: 1500, ReceiverMTU: 1600}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			opt := tt.opt
			opt.Name = UniqueName("stupdown")
			l, err := Up(ctx, opt)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = l.Close() })
			if got := labNamespacesLeft(t, opt.Name); len(got) != 4 {
				t.Errorf("namespaces after Up = %v, want 4", got)
			}

			// A second lab with the same name is refused and leaves the first intact.
			if _, err := Up(ctx, opt); err == nil {
				t.Error("Up with the name of a running lab succeeded")
			}
			if got := labNamespacesLeft(t, opt.Name); len(got) != 4 {
				t.Errorf("namespaces after the refused Up = %v, want the first lab's 4", got)
			}

			o, err := Open(ctx, opt.Name, nil)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if o.VNI != l.VNI || o.VXLANPort != l.VXLANPort || o.OuterIPv6 != l.OuterIPv6 ||
				o.ClientMTU != l.ClientMTU || o.ReceiverMTU != l.ReceiverMTU {
				t.Errorf("Open = VNI %d port %d v6 %v MTU %d/%d, Up = VNI %d port %d v6 %v MTU %d/%d",
					o.VNI, o.VXLANPort, o.OuterIPv6, o.ClientMTU, o.ReceiverMTU,
					l.VNI, l.VXLANPort, l.OuterIPv6, l.ClientMTU, l.ReceiverMTU)
			}

			// The receiver interface exists in the receiver namespace only.
			err = l.Do(l.RecvNS, func() error {
				ifc, err := net.InterfaceByName(l.RecvIface)
				if err != nil {
					return err
				}
				if ifc.MTU != l.ReceiverMTU {
					t.Errorf("%s MTU = %d, want %d", l.RecvIface, ifc.MTU, l.ReceiverMTU)
				}
				return nil
			})
			if err != nil {
				t.Errorf("Do(recv): %v", err)
			}
			if ifc, err := net.InterfaceByName(ProdMirrorIface); err == nil {
				t.Errorf("after Do the thread still sees %s (%v): namespace not restored", ProdMirrorIface, ifc)
			}

			for i := 0; i < 2; i++ {
				if err := l.Close(); err != nil {
					t.Fatalf("Close #%d: %v", i+1, err)
				}
			}
			if got := labNamespacesLeft(t, opt.Name); len(got) != 0 {
				t.Errorf("namespaces after Close = %v, want none", got)
			}
			if _, err := Open(ctx, opt.Name, nil); err == nil {
				t.Error("Open of a removed lab succeeded")
			}
		})
	}
}

func TestUpFailureLeavesNothing(t *testing.T) {
	RequireRoot(t)
	tests := []struct {
		name string
		opt  Options
	}{
		// veth refuses an MTU above 65535: fails after the client link is built.
		{"mirror link MTU too large", Options{ReceiverMTU: 70000}},
		// A VNI above 24 bits is refused before anything is created.
		{"VNI too large", Options{VNI: 1 << 24}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opt := tt.opt
			opt.Name = UniqueName("stfail")
			l, err := Up(context.Background(), opt)
			if err == nil {
				_ = l.Close()
				t.Fatal("Up succeeded, want an error")
			}
			if !strings.Contains(err.Error(), opt.Name) {
				t.Errorf("error %q does not name the lab %q", err, opt.Name)
			}
			if got := labNamespacesLeft(t, opt.Name); len(got) != 0 {
				t.Errorf("namespaces left after the failed Up: %v", got)
				_ = Remove(opt.Name, nil)
			}
		})
	}
}

func TestUpCanceled(t *testing.T) {
	RequireRoot(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	name := UniqueName("stcancel")
	if l, err := Up(ctx, Options{Name: name}); err == nil {
		_ = l.Close()
		t.Fatal("Up with a canceled context succeeded")
	}
	if got := labNamespacesLeft(t, name); len(got) != 0 {
		t.Errorf("namespaces left: %v", got)
		_ = Remove(name, nil)
	}
}

func TestHTTPClientToProd(t *testing.T) {
	l := NewLab(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := StartHTTPServer(ctx, l, l.ProdNS, ":8080")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	type conversation func(ctx context.Context, ns, addr string, reqs ...Request) (*Conversation, error)
	tests := []struct {
		name  string
		addr  string
		how   conversation
		reqs  []Request
		wantS []int
	}{
		{"v4 keep-alive", HostPort(l.ProdAddr4, 8080), l.KeepAlive,
			[]Request{{Target: "/size/10"}, {Target: "/status/204"}, {Method: "HEAD", Target: "/size/50"}, {Target: "/"}},
			[]int{200, 204, 200, 200}},
		{"v6 keep-alive", HostPort(l.ProdAddr6, 8080), l.KeepAlive,
			[]Request{{Target: "/size/100"}, {Method: "POST", Target: "/echo", Body: []byte("hello")}},
			[]int{200, 200}},
		{"v4 pipelined", HostPort(l.ProdAddr4, 8080), l.Pipeline,
			[]Request{{Target: "/size/1"}, {Target: "/status/404"}, {Target: "/chunked/10000?chunk=3000"}},
			[]int{200, 404, 200}},
		{"v4 chunked POST", HostPort(l.ProdAddr4, 8080), l.KeepAlive,
			[]Request{{Method: "POST", Target: "/echo", Body: Pattern(30000), Chunked: true, ChunkSize: 7000}},
			[]int{200}},
		{"v6 jumbo response", HostPort(l.ProdAddr6, 8080), l.KeepAlive,
			[]Request{{Target: "/size/200000"}, {Target: "/chunked/50000", Close: true}},
			[]int{200, 200}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(srv.Conns())
			conv, err := tt.how(ctx, l.ClientNS, tt.addr, tt.reqs...)
			if err != nil {
				t.Fatal(err)
			}
			if len(conv.Exchanges) != len(tt.reqs) {
				t.Fatalf("%d exchanges, want %d", len(conv.Exchanges), len(tt.reqs))
			}
			var sent, recv []byte
			for i, ex := range conv.Exchanges {
				if ex.Status != tt.wantS[i] {
					t.Errorf("exchange %d: status %d, want %d", i, ex.Status, tt.wantS[i])
				}
				if n, ok := strings.CutPrefix(ex.Request.Target, "/size/"); ok && ex.Request.Method != "HEAD" {
					if want := Pattern(atoi(t, n)); !bytes.Equal(ex.ResponseBody, want) {
						t.Errorf("exchange %d: body of %d bytes differs from Pattern(%d)", i, len(ex.ResponseBody), len(want))
					}
				}
				if ex.Request.Target == "/echo" && !bytes.Equal(ex.ResponseBody, ex.Request.Body) {
					t.Errorf("exchange %d: echo returned %d bytes, sent %d", i, len(ex.ResponseBody), len(ex.Request.Body))
				}
				sent = append(sent, ex.RequestBytes...)
				recv = append(recv, ex.ResponseBytes...)
			}
			if !bytes.Equal(sent, conv.Sent) || !bytes.Equal(recv, conv.Received) {
				t.Errorf("per-exchange bytes (%d/%d) do not add up to the connection's (%d/%d)",
					len(sent), len(recv), len(conv.Sent), len(conv.Received))
			}
			if conv.Local.Addr() != l.ClientAddr4 && conv.Local.Addr() != l.ClientAddr6 {
				t.Errorf("client address %v is not the lab client's", conv.Local)
			}

			// The server saw exactly the client's bytes, each way.
			var sc *ConnRecord
			deadline := time.Now().Add(5 * time.Second)
			for sc == nil && time.Now().Before(deadline) {
				for i, c := range srv.Conns()[before:] {
					if c.Remote == conv.Local.String() && bytes.Equal(c.Sent, conv.Received) {
						sc = &srv.Conns()[before+i]
					}
				}
				time.Sleep(5 * time.Millisecond)
			}
			if sc == nil {
				t.Fatalf("no server connection from %v sent what the client received", conv.Local)
			}
			if !bytes.Equal(sc.Received, conv.Sent) {
				t.Errorf("server received %d bytes, client sent %d (or they differ)", len(sc.Received), len(conv.Sent))
			}
		})
	}

	// The server's exchange log matches the requests.
	ex, err := srv.WaitExchanges(ctx, 12)
	if err != nil {
		t.Fatal(err)
	}
	var post *ServerExchange
	for i := range ex {
		if ex[i].Method == "POST" && len(ex[i].Body) == 30000 {
			post = &ex[i]
		}
	}
	if post == nil {
		t.Fatal("server log has no 30000-byte chunked POST")
	}
	if !bytes.Equal(post.Body, Pattern(30000)) || !bytes.Equal(post.ResponseBody, Pattern(30000)) ||
		post.Host != HostPort(l.ProdAddr4, 8080) || post.ResponseHeader.Get("X-Lab-Server") != l.ProdNS {
		t.Errorf("server log of the chunked POST: host %q, body %d bytes, response %d bytes, headers %v",
			post.Host, len(post.Body), len(post.ResponseBody), post.ResponseHeader)
	}
}

func TestShadowReachableFromRecv(t *testing.T) {
	l := NewLab(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	shadow, err := StartHTTPServer(ctx, l, l.ShadowNS, ":8080")
	if err != nil {
		t.Fatal(err)
	}
	defer shadow.Close()
	c := l.HTTPClient(l.RecvNS)
	for _, a := range []string{HostPort(l.ShadowAddr4, 8080), HostPort(l.ShadowAddr6, 8080)} {
		resp, err := c.Get("http://" + a + "/status/203")
		if err != nil {
			t.Fatalf("GET from recv to shadow %s: %v", a, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 203 || resp.Header.Get("X-Lab-Server") != l.ShadowNS {
			t.Errorf("GET %s: status %d from %q", a, resp.StatusCode, resp.Header.Get("X-Lab-Server"))
		}
	}
	// Production is not reachable from the receiver: replays cannot touch it.
	dctx, dcancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer dcancel()
	if conn, err := l.DialContext(l.RecvNS)(dctx, "tcp", HostPort(l.ProdAddr4, 8080)); err == nil {
		conn.Close()
		t.Error("recv can connect to production's address")
	}
}

func TestNsenterCommandSharesMounts(t *testing.T) {
	l := NewLab(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := l.NsenterCommand(ctx, l.RecvNS, "ip", "-o", "link", "show", "dev", l.RecvIface).CombinedOutput()
	if err != nil {
		t.Fatalf("nsenter ip link: %v: %s", err, out)
	}
	out, err = l.Command(ctx, l.ProdNS, "tc", "filter", "show", "dev", ProdIface, "egress").CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("mirred")) {
		t.Fatalf("tc filter show in prod: %v: %s", err, out)
	}
	// A file made by the command in a shared mount is visible here.
	p := filepath.Join(t.TempDir(), "mark")
	if out, err := l.NsenterCommand(ctx, l.RecvNS, "touch", p).CombinedOutput(); err != nil {
		t.Fatalf("nsenter touch: %v: %s", err, out)
	}
	if _, err := os.Stat(p); err != nil {
		t.Errorf("file created under nsenter is not visible: %v", err)
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			t.Fatalf("not a number: %q", s)
		}
		n = n*10 + int(c-'0')
	}
	return n
}

func TestRemoveStale(t *testing.T) {
	RequireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// PIDs above pid_max (at most 4194304) never run.
	dead := "ststale-999999999-0badc0de-prod"
	alive := UniqueName("ststale") + "-prod"
	for _, ns := range []string{dead, alive} {
		if err := run(ctx, slogDiscard(), "ip", "netns", "add", ns); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = removeNamespaces(slogDiscard(), []string{ns}) })
	}
	removed, err := RemoveStale(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(removed, dead) || slices.Contains(removed, alive) {
		t.Errorf("RemoveStale removed %v; want %s and not %s", removed, dead, alive)
	}
	if namespaceExists(dead) || !namespaceExists(alive) {
		t.Errorf("after RemoveStale: %s exists %v, %s exists %v", dead, namespaceExists(dead), alive, namespaceExists(alive))
	}
}

func slogDiscard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
