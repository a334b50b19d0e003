package main

import (
	"errors"
	"io"

	"github.com/shadowtap/shadowtap/pkg/xdp"
)

func cmdStats(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("stats", stderr)
	iface := fs.String("iface", "", "interface a running `shadowtap run` is attached to (required)")
	pinRoot := fs.String("pin-root", "/sys/fs/bpf/shadowtap", "where run pins its maps")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *iface == "" {
		return usageError{errors.New("--iface is required")}
	}
	c, err := xdp.ReadPinnedStats(*pinRoot, *iface)
	if err != nil {
		return err
	}
	xdp.FormatCounters(stdout, c)
	return nil
}
