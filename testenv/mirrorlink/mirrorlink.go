// Package mirrorlink opens AF_PACKET writers on the mirror lab's production
// mirror link, addressed as an AWS mirror session addresses its target (the
// receiver's interface), for the load generators that feed the lab's
// receiver: the benchmark driver (scripts/benchlab) and the floods
// (testenv/flood). It sits before the data path: what it writes is what the
// receiver's XDP program sees.
package mirrorlink

import (
	"errors"
	"fmt"
	"net"

	"github.com/shadowtap/shadowtap/testenv"
	"github.com/shadowtap/shadowtap/testenv/mirrorgen"
)

// Writers are n AF_PACKET writers on production's mirror interface, with
// the link's source and destination MAC addresses.
type Writers struct {
	W              []*mirrorgen.PacketWriter
	SrcMAC, DstMAC net.HardwareAddr
}

// Open opens n writers (at least 1) in lab.
func Open(lab *testenv.Lab, n int) (*Writers, error) {
	ws := &Writers{}
	err := lab.Do(lab.RecvNS, func() error {
		ifi, err := net.InterfaceByName(lab.RecvIface)
		if err != nil {
			return fmt.Errorf("receiver interface %s: %w", lab.RecvIface, err)
		}
		ws.DstMAC = ifi.HardwareAddr
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = lab.Do(lab.ProdNS, func() error {
		ifi, err := net.InterfaceByName(testenv.ProdMirrorIface)
		if err != nil {
			return fmt.Errorf("production mirror interface %s: %w", testenv.ProdMirrorIface, err)
		}
		ws.SrcMAC = ifi.HardwareAddr
		for range max(n, 1) {
			w, err := mirrorgen.NewPacketWriter(testenv.ProdMirrorIface)
			if err != nil {
				return err
			}
			ws.W = append(ws.W, w)
		}
		return nil
	})
	if err != nil {
		ws.Close()
		return nil, err
	}
	return ws, nil
}

// Close closes the writers.
func (ws *Writers) Close() error {
	var errs []error
	for _, w := range ws.W {
		errs = append(errs, w.Close())
	}
	ws.W = nil
	return errors.Join(errs...)
}
