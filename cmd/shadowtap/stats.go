package main

import (
	"context"
	"errors"
	"io"

	"github.com/spf13/pflag"

	"github.com/shadowtap/shadowtap/pkg/xdp"
)

// statsCmd is `shadowtap stats`: the XDP counters a running `run` pinned.
func statsCmd(fs *pflag.FlagSet, stdout, _ io.Writer) func(context.Context) error {
	iface := fs.String("iface", "", "interface a running 'shadowtap run' is attached to (required)")
	pinRoot := fs.String("pin-root", xdp.DefaultPinRoot, "where run pins its maps")
	return func(context.Context) error {
		if *iface == "" {
			return usageError{errors.New("--iface is required")}
		}
		c, err := xdp.ReadPinnedStats(*pinRoot, *iface)
		if err != nil {
			return err
		}
		return xdp.FormatCounters(stdout, c)
	}
}
