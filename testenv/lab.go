package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Defaults of Options.
const (
	DefaultVNI         = 42
	DefaultClientMTU   = 9001
	DefaultReceiverMTU = 9200
	DefaultVXLANPort   = 4789
)

// Interface names inside the lab's namespaces. Each lives in its own
// namespace, so they are the same in every lab.
const (
	// ClientIface is the client's interface towards production (namespace client).
	ClientIface = "eth0"
	// ProdIface is production's client-facing interface (namespace prod): the
	// "ENI" whose ingress and egress are mirrored.
	ProdIface = "eth0"
	// ProdMirrorIface is production's interface towards the receiver (namespace prod).
	ProdMirrorIface = "mir0"
	// VXLANIface is the kernel VXLAN device in prod that wraps the mirror copies.
	VXLANIface = "vx0"
	// RecvIface is the receiver's interface where the VXLAN mirror traffic
	// arrives (namespace recv): the one to attach shadowtap to.
	RecvIface = "mir0"
	// RecvShadowIface is the receiver's interface towards the shadow (namespace recv).
	RecvShadowIface = "shd0"
	// ShadowIface is the shadow's interface towards the receiver (namespace shadow).
	ShadowIface = "eth0"
)

// netnsDir is where `ip netns` keeps the named namespaces.
const netnsDir = "/run/netns"

// Options configure a lab. The zero value, with a Name, is a working lab.
type Options struct {
	// Name prefixes the lab's namespaces: <Name>-client, <Name>-prod,
	// <Name>-recv, <Name>-shadow. It must be unique among labs that exist at the
	// same time; tests use UniqueName. Empty means UniqueName("stlab").
	Name string
	// VNI of the mirror session (the VXLAN ID). 0 means DefaultVNI.
	VNI uint32
	// VXLANPort is the UDP destination port of the mirror. 0 means 4789.
	VXLANPort uint16
	// ClientMTU is the MTU of the client<->prod link. 0 means 9001 (VPC jumbo).
	ClientMTU int
	// ReceiverMTU is the MTU of the prod<->recv link that carries the VXLAN
	// packets. 0 means 9200, enough for a whole 9001-byte frame plus VXLAN.
	ReceiverMTU int
	// OuterIPv6 sends the mirror over IPv6 (fd82::1 -> fd82::2) instead of
	// IPv4 (10.82.0.1 -> 10.82.0.2). The client link always has both families.
	OuterIPv6 bool
	// Logger receives one line per setup step at debug level. Nil discards.
	Logger *slog.Logger
}

// Lab is a running mirror lab:
//
//	client --eth0/eth0-- prod --mir0/mir0-- recv --shd0/eth0-- shadow
//	                      |
//	           tc clsact on prod eth0, ingress and egress:
//	           u32 match u32 0 0 action mirred egress mirror dev vx0
//	           vx0: VXLAN id VNI, local prod mir0, remote recv mir0, dstport 4789
//
// Every frame that production's client-facing interface receives or sends
// arrives in recv, on RecvIface, wrapped in VXLAN to UDP VXLANPort, as an AWS
// VPC Traffic Mirroring session delivers it. Replays from recv to the shadow
// namespace never touch production. Offloads (TSO, GSO, GRO) are off on the
// client link, so TCP segments are wire-sized: up to ClientMTU-52 payload bytes
// with timestamps (8949 with the default MTU and no options).
//
// Addresses are the same in every lab; labs are isolated by their namespaces.
type Lab struct {
	Name string

	// Namespace names, for Do, Command, `ip netns exec`.
	ClientNS, ProdNS, RecvNS, ShadowNS string

	// The client link (mirrored).
	ClientAddr4, ClientAddr6 netip.Addr // 10.81.0.1, fd81::1
	ProdAddr4, ProdAddr6     netip.Addr // 10.81.0.2, fd81::2

	// The mirror link. MirrorSource is the outer source address of the VXLAN
	// packets (what --source must allow), RecvAddr their outer destination.
	MirrorSource4, MirrorSource6 netip.Addr // 10.82.0.1, fd82::1 (prod mir0)
	RecvAddr4, RecvAddr6         netip.Addr // 10.82.0.2, fd82::2 (recv mir0)

	// The shadow link.
	RecvShadowAddr4, RecvShadowAddr6 netip.Addr // 10.83.0.1, fd83::1 (recv shd0)
	ShadowAddr4, ShadowAddr6         netip.Addr // 10.83.0.2, fd83::2 (shadow eth0)

	VNI         uint32
	VXLANPort   uint16
	ClientMTU   int
	ReceiverMTU int
	OuterIPv6   bool

	// RecvIface is the interface in RecvNS where mirror traffic arrives.
	RecvIface string

	log *slog.Logger
}

// MirrorSource is the outer source address of the mirror's VXLAN packets,
// in the family the lab uses for the mirror.
func (l *Lab) MirrorSource() netip.Addr {
	if l.OuterIPv6 {
		return l.MirrorSource6
	}
	return l.MirrorSource4
}

// MirrorSourcePrefix is MirrorSource as a single-address prefix, for a
// --source allowlist.
func (l *Lab) MirrorSourcePrefix() netip.Prefix {
	a := l.MirrorSource()
	return netip.PrefixFrom(a, a.BitLen())
}

// RecvAddr is the outer destination of the mirror's VXLAN packets.
func (l *Lab) RecvAddr() netip.Addr {
	if l.OuterIPv6 {
		return l.RecvAddr6
	}
	return l.RecvAddr4
}

// Namespaces returns the lab's namespace names in setup order.
func (l *Lab) Namespaces() []string {
	return []string{l.ClientNS, l.ProdNS, l.RecvNS, l.ShadowNS}
}

// UniqueName returns prefix-<pid>-<random hex>, a lab name that no other
// process and no other call in this process will produce.
func UniqueName(prefix string) string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		// crypto/rand does not fail on Linux; keep going with the time.
		return fmt.Sprintf("%s-%d-%x", prefix, os.Getpid(), time.Now().UnixNano()&0xffffffff)
	}
	return fmt.Sprintf("%s-%d-%s", prefix, os.Getpid(), hex.EncodeToString(b[:]))
}

// newLab fills a Lab from options without touching the system.
func newLab(opt Options) (*Lab, error) {
	if opt.Name == "" {
		opt.Name = UniqueName("stlab")
	}
	if strings.ContainsAny(opt.Name, "/ \t\n") || opt.Name == "." || opt.Name == ".." {
		return nil, fmt.Errorf("lab name %q: use letters, digits, '-', '_' and '.'", opt.Name)
	}
	if opt.VNI == 0 {
		opt.VNI = DefaultVNI
	}
	if opt.VNI > 0xffffff {
		return nil, fmt.Errorf("lab %q: VNI %d: a VXLAN ID has 24 bits (at most 16777215)", opt.Name, opt.VNI)
	}
	if opt.VXLANPort == 0 {
		opt.VXLANPort = DefaultVXLANPort
	}
	if opt.ClientMTU == 0 {
		opt.ClientMTU = DefaultClientMTU
	}
	if opt.ReceiverMTU == 0 {
		opt.ReceiverMTU = DefaultReceiverMTU
	}
	if opt.ClientMTU < 1280 || opt.ReceiverMTU < 1280 {
		return nil, fmt.Errorf("lab %q: MTUs %d/%d: both must be at least 1280 (IPv6 minimum)", opt.Name, opt.ClientMTU, opt.ReceiverMTU)
	}
	log := opt.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Lab{
		Name:            opt.Name,
		ClientNS:        opt.Name + "-client",
		ProdNS:          opt.Name + "-prod",
		RecvNS:          opt.Name + "-recv",
		ShadowNS:        opt.Name + "-shadow",
		ClientAddr4:     netip.MustParseAddr("10.81.0.1"),
		ClientAddr6:     netip.MustParseAddr("fd81::1"),
		ProdAddr4:       netip.MustParseAddr("10.81.0.2"),
		ProdAddr6:       netip.MustParseAddr("fd81::2"),
		MirrorSource4:   netip.MustParseAddr("10.82.0.1"),
		MirrorSource6:   netip.MustParseAddr("fd82::1"),
		RecvAddr4:       netip.MustParseAddr("10.82.0.2"),
		RecvAddr6:       netip.MustParseAddr("fd82::2"),
		RecvShadowAddr4: netip.MustParseAddr("10.83.0.1"),
		RecvShadowAddr6: netip.MustParseAddr("fd83::1"),
		ShadowAddr4:     netip.MustParseAddr("10.83.0.2"),
		ShadowAddr6:     netip.MustParseAddr("fd83::2"),
		VNI:             opt.VNI,
		VXLANPort:       opt.VXLANPort,
		ClientMTU:       opt.ClientMTU,
		ReceiverMTU:     opt.ReceiverMTU,
		OuterIPv6:       opt.OuterIPv6,
		RecvIface:       RecvIface,
		log:             log,
	}, nil
}

// Up builds a lab. On any error it removes whatever it had created and
// returns an error naming the step that failed. The caller must Close the lab.
func Up(ctx context.Context, opt Options) (*Lab, error) {
	l, err := newLab(opt)
	if err != nil {
		return nil, err
	}
	for _, ns := range l.Namespaces() {
		if namespaceExists(ns) {
			return nil, fmt.Errorf("lab %q: namespace %s already exists; remove the old lab (scripts/lab.sh down --name %s) or pick another name", l.Name, ns, l.Name)
		}
	}
	if err := l.setup(ctx); err != nil {
		if cerr := l.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("cleaning up after the failed setup: %w", cerr))
		}
		return nil, fmt.Errorf("lab %q: %w", l.Name, err)
	}
	return l, nil
}

// step is one command of the setup.
type step struct {
	ns   string // "" = run directly, else under `ip netns exec ns`
	args []string
}

func (l *Lab) steps() []step {
	c, p, r, s := l.ClientNS, l.ProdNS, l.RecvNS, l.ShadowNS
	cmtu, rmtu := strconv.Itoa(l.ClientMTU), strconv.Itoa(l.ReceiverMTU)
	ip := func(ns string, args ...string) step {
		return step{args: append([]string{"ip", "-n", ns}, args...)}
	}
	tc := func(ns string, args ...string) step {
		return step{args: append([]string{"tc", "-n", ns}, args...)}
	}
	// Offloads off, so TCP segments are wire-sized on the client link and
	// nothing GSO-sized crosses the mirror link. Checksums are completed
	// before a packet leaves, so mirror copies carry valid inner checksums.
	noOffload := func(ns, dev string, txCsum bool) step {
		args := []string{"ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off"}
		if !txCsum {
			args = append(args, "tx", "off")
		}
		return step{ns: ns, args: args}
	}
	addr := func(ns, dev, a string) step {
		st := ip(ns, "addr", "add", a, "dev", dev)
		if strings.Contains(a, ":") {
			st.args = append(st.args, "nodad")
		}
		return st
	}
	up := func(ns, dev string) step { return ip(ns, "link", "set", dev, "up") }

	var st []step
	for _, ns := range l.Namespaces() {
		st = append(st, step{args: []string{"ip", "netns", "add", ns}}, up(ns, "lo"))
	}
	local, remote := l.MirrorSource4.String(), l.RecvAddr4.String()
	vxMTU := l.ReceiverMTU - 50
	if l.OuterIPv6 {
		local, remote = l.MirrorSource6.String(), l.RecvAddr6.String()
		vxMTU = l.ReceiverMTU - 70
	}
	st = append(st,
		// client <-> prod, the mirrored link.
		ip(c, "link", "add", ClientIface, "mtu", cmtu, "type", "veth", "peer", "name", ProdIface, "netns", p, "mtu", cmtu),
		noOffload(c, ClientIface, true), noOffload(p, ProdIface, true),
		addr(c, ClientIface, l.ClientAddr4.String()+"/24"), addr(c, ClientIface, l.ClientAddr6.String()+"/64"),
		addr(p, ProdIface, l.ProdAddr4.String()+"/24"), addr(p, ProdIface, l.ProdAddr6.String()+"/64"),
		up(c, ClientIface), up(p, ProdIface),
		// prod <-> recv, the mirror link.
		ip(p, "link", "add", ProdMirrorIface, "mtu", rmtu, "type", "veth", "peer", "name", RecvIface, "netns", r, "mtu", rmtu),
		noOffload(p, ProdMirrorIface, false), noOffload(r, RecvIface, true),
		addr(p, ProdMirrorIface, l.MirrorSource4.String()+"/24"), addr(p, ProdMirrorIface, l.MirrorSource6.String()+"/64"),
		addr(r, RecvIface, l.RecvAddr4.String()+"/24"), addr(r, RecvIface, l.RecvAddr6.String()+"/64"),
		up(p, ProdMirrorIface), up(r, RecvIface),
		// recv <-> shadow, where replays go.
		ip(r, "link", "add", RecvShadowIface, "type", "veth", "peer", "name", ShadowIface, "netns", s),
		addr(r, RecvShadowIface, l.RecvShadowAddr4.String()+"/24"), addr(r, RecvShadowIface, l.RecvShadowAddr6.String()+"/64"),
		addr(s, ShadowIface, l.ShadowAddr4.String()+"/24"), addr(s, ShadowIface, l.ShadowAddr6.String()+"/64"),
		up(r, RecvShadowIface), up(s, ShadowIface),
		// The mirror session: VXLAN device and tc rules in prod.
		ip(p, "link", "add", VXLANIface, "type", "vxlan", "id", strconv.FormatUint(uint64(l.VNI), 10),
			"local", local, "remote", remote, "dstport", strconv.Itoa(int(l.VXLANPort)),
			"dev", ProdMirrorIface, "nolearning", "ttl", "64"),
		ip(p, "link", "set", VXLANIface, "mtu", strconv.Itoa(vxMTU)),
		// vx0 carries the mirror copies and nothing of its own: no IPv6
		// link-local address, router solicitations or MLD reports.
		step{ns: p, args: []string{"sysctl", "-qw", "net.ipv6.conf." + VXLANIface + ".disable_ipv6=1"}},
		noOffload(p, VXLANIface, false),
		up(p, VXLANIface),
		tc(p, "qdisc", "add", "dev", ProdIface, "clsact"),
		tc(p, "filter", "add", "dev", ProdIface, "ingress", "protocol", "all", "u32", "match", "u32", "0", "0",
			"action", "mirred", "egress", "mirror", "dev", VXLANIface),
		tc(p, "filter", "add", "dev", ProdIface, "egress", "protocol", "all", "u32", "match", "u32", "0", "0",
			"action", "mirred", "egress", "mirror", "dev", VXLANIface),
	)
	return st
}

func (l *Lab) setup(ctx context.Context) error {
	if err := os.MkdirAll(netnsDir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", netnsDir, err)
	}
	for _, s := range l.steps() {
		args := s.args
		if s.ns != "" {
			args = append([]string{"ip", "netns", "exec", s.ns}, args...)
		}
		if err := run(ctx, l.log, args...); err != nil {
			return err
		}
	}
	// A veth reports carrier a moment after both ends are up; packets sent
	// before that are dropped, and a test's first SYN would wait a second
	// for its retransmission.
	links := [][2]string{
		{l.ClientNS, ClientIface}, {l.ProdNS, ProdIface}, {l.ProdNS, ProdMirrorIface},
		{l.RecvNS, RecvIface}, {l.RecvNS, RecvShadowIface}, {l.ShadowNS, ShadowIface},
	}
	for _, nl := range links {
		if err := waitOperUp(ctx, nl[0], nl[1]); err != nil {
			return err
		}
	}
	return nil
}

// waitOperUp waits until dev in ns has carrier (operstate UP).
func waitOperUp(ctx context.Context, ns, dev string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		ld, err := linkDetails(ctx, ns, dev)
		if err == nil && ld.OperState == "UP" {
			return nil
		}
		select {
		case <-ctx.Done():
			state := "unknown"
			if ld != nil {
				state = ld.OperState
			}
			return fmt.Errorf("%s in namespace %s did not come up (operstate %s): %w", dev, ns, state, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// run executes a command and returns an error carrying the command line and
// its output, which is what a user needs to see why a lab step failed.
func run(ctx context.Context, log *slog.Logger, args ...string) error {
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	log.Debug("lab step", "cmd", strings.Join(args, " "), "took", time.Since(start), "err", err)
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// Close removes the lab's namespaces, and with them every interface, address,
// VXLAN device and tc rule in them. It is idempotent and safe after a partial
// setup: it removes those namespaces that exist.
func (l *Lab) Close() error {
	if l == nil {
		return nil
	}
	return removeNamespaces(l.log, l.Namespaces())
}

func removeNamespaces(log *slog.Logger, names []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var errs []error
	// Reverse order: shadow, recv, prod, client.
	for i := len(names) - 1; i >= 0; i-- {
		if !namespaceExists(names[i]) {
			continue
		}
		if err := run(ctx, log, "ip", "netns", "del", names[i]); err != nil && namespaceExists(names[i]) {
			errs = append(errs, fmt.Errorf("removing namespace %s: %w", names[i], err))
		}
	}
	return errors.Join(errs...)
}

func namespaceExists(name string) bool {
	_, err := os.Stat(filepath.Join(netnsDir, name))
	return err == nil
}

// Open returns the lab that a previous Up (for instance `scripts/lab.sh up`)
// left running under this name, reading its VNI, port and MTUs from the
// system. Closing it removes it.
func Open(ctx context.Context, name string, logger *slog.Logger) (*Lab, error) {
	l, err := newLab(Options{Name: name, Logger: logger})
	if err != nil {
		return nil, err
	}
	var missing []string
	for _, ns := range l.Namespaces() {
		if !namespaceExists(ns) {
			missing = append(missing, ns)
		}
	}
	if len(missing) == 4 {
		return nil, fmt.Errorf("lab %q is not up (no namespace %s); bring it up with scripts/lab.sh up --name %s", name, l.ProdNS, name)
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("lab %q is incomplete (missing %s); remove it with scripts/lab.sh down --name %s and bring it up again", name, strings.Join(missing, ", "), name)
	}
	vx, err := linkDetails(ctx, l.ProdNS, VXLANIface)
	if err != nil {
		return nil, fmt.Errorf("lab %q: %w", name, err)
	}
	l.VNI, l.VXLANPort = vx.LinkInfo.Data.ID, vx.LinkInfo.Data.Port
	l.OuterIPv6 = strings.Contains(vx.LinkInfo.Data.Remote6, ":")
	if cl, err := linkDetails(ctx, l.ClientNS, ClientIface); err == nil {
		l.ClientMTU = cl.MTU
	}
	if rl, err := linkDetails(ctx, l.RecvNS, RecvIface); err == nil {
		l.ReceiverMTU = rl.MTU
	}
	return l, nil
}

// linkJSON is the part of `ip -j -d link show` that Open reads.
type linkJSON struct {
	MTU       int    `json:"mtu"`
	OperState string `json:"operstate"`
	LinkInfo  struct {
		Kind string `json:"info_kind"`
		Data struct {
			ID      uint32 `json:"id"`
			Port    uint16 `json:"port"`
			Remote6 string `json:"remote6"`
		} `json:"info_data"`
	} `json:"linkinfo"`
}

func linkDetails(ctx context.Context, ns, dev string) (*linkJSON, error) {
	out, err := exec.CommandContext(ctx, "ip", "-n", ns, "-j", "-d", "link", "show", "dev", dev).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, bytes.TrimSpace(ee.Stderr))
		}
		return nil, fmt.Errorf("reading %s in namespace %s: %w", dev, ns, err)
	}
	var links []linkJSON
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 {
		return nil, fmt.Errorf("reading %s in namespace %s: unexpected output of ip -j link: %q", dev, ns, out)
	}
	return &links[0], nil
}

// Remove removes the namespaces of the lab with this name, whatever state it
// is in. It is what `scripts/lab.sh down` does.
func Remove(name string, logger *slog.Logger) error {
	l, err := newLab(Options{Name: name, Logger: logger})
	if err != nil {
		return err
	}
	return l.Close()
}

// Env returns the lab as KEY=VALUE pairs, in a stable order, for scripts.
func (l *Lab) Env() []string {
	return []string{
		"LAB_NAME=" + l.Name,
		"CLIENT_NS=" + l.ClientNS,
		"PROD_NS=" + l.ProdNS,
		"RECV_NS=" + l.RecvNS,
		"SHADOW_NS=" + l.ShadowNS,
		"CLIENT_IFACE=" + ClientIface,
		"PROD_IFACE=" + ProdIface,
		"RECV_IFACE=" + l.RecvIface,
		"CLIENT_ADDR4=" + l.ClientAddr4.String(),
		"CLIENT_ADDR6=" + l.ClientAddr6.String(),
		"PROD_ADDR4=" + l.ProdAddr4.String(),
		"PROD_ADDR6=" + l.ProdAddr6.String(),
		"MIRROR_SOURCE=" + l.MirrorSource().String(),
		"MIRROR_SOURCE_CIDR=" + l.MirrorSourcePrefix().String(),
		"RECV_ADDR=" + l.RecvAddr().String(),
		"SHADOW_ADDR4=" + l.ShadowAddr4.String(),
		"SHADOW_ADDR6=" + l.ShadowAddr6.String(),
		"VNI=" + strconv.FormatUint(uint64(l.VNI), 10),
		"VXLAN_PORT=" + strconv.Itoa(int(l.VXLANPort)),
		"CLIENT_MTU=" + strconv.Itoa(l.ClientMTU),
		"RECEIVER_MTU=" + strconv.Itoa(l.ReceiverMTU),
	}
}

// LinkStats are an interface's counters, as `ip -s link` shows them.
type LinkStats struct {
	RxPackets, RxBytes, RxDropped uint64
	TxPackets, TxBytes, TxDropped uint64
}

// LinkStats reads the counters of dev in namespace ns, for instance
// l.LinkStats(ctx, l.RecvNS, l.RecvIface) for the mirror packets that arrived,
// or l.LinkStats(ctx, l.ProdNS, VXLANIface) for the copies the mirror sent.
func (l *Lab) LinkStats(ctx context.Context, ns, dev string) (LinkStats, error) {
	out, err := exec.CommandContext(ctx, "ip", "-n", ns, "-j", "-s", "link", "show", "dev", dev).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, bytes.TrimSpace(ee.Stderr))
		}
		return LinkStats{}, fmt.Errorf("reading counters of %s in namespace %s: %w", dev, ns, err)
	}
	type dir struct {
		Bytes   uint64 `json:"bytes"`
		Packets uint64 `json:"packets"`
		Dropped uint64 `json:"dropped"`
	}
	var links []struct {
		Stats struct {
			RX dir `json:"rx"`
			TX dir `json:"tx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 {
		return LinkStats{}, fmt.Errorf("reading counters of %s in namespace %s: unexpected output of ip -j -s link: %q", dev, ns, out)
	}
	s := links[0].Stats
	return LinkStats{
		RxPackets: s.RX.Packets, RxBytes: s.RX.Bytes, RxDropped: s.RX.Dropped,
		TxPackets: s.TX.Packets, TxBytes: s.TX.Bytes, TxDropped: s.TX.Dropped,
	}, nil
}

// SetMirror turns the mirror session off (false) or on again (true) by
// removing or restoring the tc rules on production's interface. Traffic
// between client and prod flows either way; with the mirror off nothing
// reaches recv, so a test can start a connection unseen and let the receiver
// join it mid-stream. It is idempotent.
func (l *Lab) SetMirror(ctx context.Context, enabled bool) error {
	out, err := exec.CommandContext(ctx, "tc", "-n", l.ProdNS, "qdisc", "show", "dev", ProdIface).CombinedOutput()
	if err != nil {
		return fmt.Errorf("reading tc qdiscs of %s in %s: %w: %s", ProdIface, l.ProdNS, err, bytes.TrimSpace(out))
	}
	present := bytes.Contains(out, []byte("clsact"))
	switch {
	case enabled == present:
		return nil
	case !enabled:
		return run(ctx, l.log, "tc", "-n", l.ProdNS, "qdisc", "del", "dev", ProdIface, "clsact")
	}
	for _, s := range l.steps() {
		if len(s.args) > 3 && s.args[0] == "tc" {
			if err := run(ctx, l.log, s.args...); err != nil {
				return fmt.Errorf("turning the mirror on: %w", err)
			}
		}
	}
	return nil
}

// RemoveStale removes the namespaces of labs that UniqueName named for a
// process that no longer runs (a test binary killed before its cleanup), and
// returns the names it removed. Labs of running processes and labs with
// other names are left alone.
func RemoveStale(logger *slog.Logger) ([]string, error) {
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ents, err := os.ReadDir(netnsDir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", netnsDir, err)
	}
	var stale []string
	for _, e := range ents {
		// <prefix>-<pid>-<8 hex>-<role>
		parts := strings.Split(e.Name(), "-")
		if len(parts) < 4 {
			continue
		}
		role, rnd, pidS := parts[len(parts)-1], parts[len(parts)-2], parts[len(parts)-3]
		switch role {
		case "client", "prod", "recv", "shadow":
		default:
			continue
		}
		if _, err := hex.DecodeString(rnd); err != nil || len(rnd) != 8 {
			continue
		}
		pid, err := strconv.Atoi(pidS)
		if err != nil || pid <= 0 {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			continue
		}
		stale = append(stale, e.Name())
	}
	return stale, removeNamespaces(logger, stale)
}
