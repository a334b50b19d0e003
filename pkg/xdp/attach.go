package xdp

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// enaMaxXDPMTU is the largest MTU the AWS ENA driver allows with XDP.
const enaMaxXDPMTU = 3498

// errPrivileges is the one-line error for a process that may not load BPF.
func errPrivileges(cause error) error {
	msg := "shadowtap needs root, or CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN, to load and attach XDP: " +
		"run it as root (sudo), or grant the capabilities (setcap cap_bpf,cap_perfmon,cap_net_admin+ep shadowtap)"
	if cause != nil {
		return fmt.Errorf("%s: %w", msg, cause)
	}
	return errors.New(msg)
}

// checkPrivileges fails early, with a clear message, when the process lacks
// what loading and attaching the program needs.
func checkPrivileges() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("read process capabilities: %w", err)
	}
	has := func(c int) bool { return data[c/32].Effective&(1<<(uint(c)%32)) != 0 }
	if has(unix.CAP_SYS_ADMIN) || (has(unix.CAP_BPF) && has(unix.CAP_PERFMON) && has(unix.CAP_NET_ADMIN)) {
		return nil
	}
	return errPrivileges(nil)
}

// lookupIface finds the interface by name.
func lookupIface(name string) (netlink.Link, error) {
	if name == "" {
		return nil, errors.New("no interface: pass the one mirror traffic arrives on (--iface eth0)")
	}
	l, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil, fmt.Errorf("no network interface %q: list them with \"ip link\" and pass one to --iface", name)
		}
		return nil, fmt.Errorf("look up interface %q: %w", name, err)
	}
	return l, nil
}

// checkExistingXDP refuses an interface that already has an XDP program,
// unless force, in which case it detaches that program.
func checkExistingXDP(l netlink.Link, force bool, log *slog.Logger) error {
	name := l.Attrs().Name
	x := l.Attrs().Xdp
	if x == nil || !x.Attached {
		return nil
	}
	if !force {
		return fmt.Errorf("interface %s already has an XDP program attached (id %d): detach it (ip link set dev %s xdp off) or pass --force to replace it",
			name, x.ProgId, name)
	}
	log.Warn("xdp: replacing the XDP program already attached", "iface", name, "prog_id", x.ProgId)
	var flags []int
	switch x.AttachMode {
	case nl.XDP_ATTACHED_DRV:
		flags = []int{unix.XDP_FLAGS_DRV_MODE}
	case nl.XDP_ATTACHED_SKB:
		flags = []int{unix.XDP_FLAGS_SKB_MODE}
	case nl.XDP_ATTACHED_HW:
		flags = []int{unix.XDP_FLAGS_HW_MODE}
	default:
		flags = []int{unix.XDP_FLAGS_DRV_MODE, unix.XDP_FLAGS_SKB_MODE, unix.XDP_FLAGS_HW_MODE}
	}
	var err error
	for _, f := range flags {
		if err = netlink.LinkSetXdpFdWithFlags(l, -1, f); err != nil {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("cannot remove the XDP program (id %d) on %s: %w: a BPF link of another process holds it (another shadowtap run?): stop that process",
			x.ProgId, name, err)
	}
	return nil
}

// bpffsRoot is where bpffs is mounted when it is missing.
const bpffsRoot = "/sys/fs/bpf"

// ensureBPFFS makes sure pinRoot is on a bpffs, mounting one at /sys/fs/bpf
// when pinRoot is under it and nothing is mounted there.
func ensureBPFFS(pinRoot string) error {
	dir := filepath.Clean(pinRoot)
	// The nearest existing directory tells which filesystem pins land on.
	for {
		if _, err := os.Stat(dir); err == nil || dir == "/" {
			break
		}
		dir = filepath.Dir(dir)
	}
	if isBPFFS(dir) {
		return nil
	}
	under := pinRoot == bpffsRoot || strings.HasPrefix(filepath.Clean(pinRoot), bpffsRoot+"/")
	if !under {
		return fmt.Errorf("pin directory %s is not on a bpffs: mount one there (mount -t bpf bpf DIR) or pin under %s", pinRoot, bpffsRoot)
	}
	if isBPFFS(bpffsRoot) {
		return nil
	}
	if err := os.MkdirAll(bpffsRoot, 0o755); err != nil {
		return fmt.Errorf("cannot create %s for bpffs: %w: mount it yourself (mount -t bpf bpf %s)", bpffsRoot, err, bpffsRoot)
	}
	if err := unix.Mount("bpf", bpffsRoot, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("cannot mount bpffs at %s: %w: mount it yourself (mount -t bpf bpf %s), or give the process CAP_SYS_ADMIN", bpffsRoot, err, bpffsRoot)
	}
	return nil
}

func isBPFFS(dir string) bool {
	var st unix.Statfs_t
	return unix.Statfs(dir, &st) == nil && st.Type == unix.BPF_FS_MAGIC
}

// attach attaches the loaded program to l in the configured mode.
func (p *Probe) attach(l netlink.Link) error {
	idx := l.Attrs().Index
	name := l.Attrs().Name
	native := func() error {
		lk, err := link.AttachXDP(link.XDPOptions{Program: p.objs.ShadowtapXdp, Interface: idx, Flags: link.XDPDriverMode})
		if err != nil {
			return nativeError(l, err)
		}
		p.link = lk
		return nil
	}
	generic := func() error {
		lk, err := link.AttachXDP(link.XDPOptions{Program: p.objs.ShadowtapXdp, Interface: idx, Flags: link.XDPGenericMode})
		if err != nil {
			return fmt.Errorf("attach XDP to %s in generic mode: %w: use %s instead", name, err, socketHint)
		}
		p.link = lk
		return nil
	}
	switch p.cfg.Mode {
	case ModeNative:
		return native()
	case ModeGeneric:
		if err := generic(); err != nil {
			return err
		}
		p.log.Info("xdp: attached in generic mode", "iface", name)
		return nil
	default: // auto
		nerr := native()
		if nerr == nil {
			p.log.Info("xdp: attached in native mode", "iface", name)
			return nil
		}
		p.log.Warn("xdp: native mode failed, falling back to generic mode (slower: every packet becomes an skb first)",
			"iface", name, "reason", nerr)
		if err := generic(); err != nil {
			return fmt.Errorf("%w; and native mode failed too: %v", err, nerr)
		}
		p.log.Info("xdp: attached in generic mode", "iface", name)
		return nil
	}
}

// socketHint names the capture source that needs no XDP, and its cost
// (BENCHMARKS.md, lab benchmark).
const socketHint = "--capture socket (a UDP socket on the VXLAN port: no XDP needed, " +
	"but every packet goes through the kernel's UDP stack: more CPU per packet, " +
	"and about two thirds of XDP's lossless rate in the lab benchmark)"

// nativeError turns a failed native attach into an error that says what to
// do: most often the driver's MTU limit for XDP.
func nativeError(l netlink.Link, err error) error {
	name := l.Attrs().Name
	mtu := l.Attrs().MTU
	driver := driverName(l)
	if mtu > 1500 {
		limit := ""
		if driver == "ena" {
			limit = fmt.Sprintf(" (ENA allows at most %d)", enaMaxXDPMTU)
		}
		return fmt.Errorf("attach XDP to %s in native mode: %w: MTU %d is probably too large for XDP on driver %s%s: lower the MTU (ip link set dev %s mtu %d), use --xdp-mode generic, or use %s",
			name, err, mtu, driver, limit, name, enaMaxXDPMTU, socketHint)
	}
	return fmt.Errorf("attach XDP to %s in native mode: %w: driver %s may not support native XDP: use --xdp-mode generic or %s",
		name, err, driver, socketHint)
}

// driverName is the kernel driver behind l ("ena", "mlx5_core"), or the link
// type for virtual devices ("veth").
func driverName(l netlink.Link) string {
	target, err := os.Readlink(filepath.Join("/sys/class/net", l.Attrs().Name, "device", "driver"))
	if err == nil {
		return filepath.Base(target)
	}
	return l.Type()
}
