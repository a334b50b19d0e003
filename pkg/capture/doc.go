// Package capture holds the capture sources that work without XDP; each is
// an event.Source, at the head of the data path in place of the XDP ring
// buffer reader (pkg/xdp), and feeds the same pipeline: reader → flow shards
// → reassembly → HTTP → replay.
//
//   - Socket (--capture socket): UDP sockets bound to the VXLAN port, where
//     the host's kernel has already stripped the outer Ethernet, IP and UDP
//     headers. For hosts where XDP cannot run (ENA with an MTU above 3498,
//     virtual NICs without native XDP) or without CAP_BPF. It costs a trip
//     through the kernel's UDP stack and a copy per packet, and every UDP
//     datagram on the port is received (other traffic is never seen at all).
//   - Pcap (--capture pcap, pcap.go): a capture file of mirror traffic,
//     replayed at the recorded pace or as fast as possible.
//
// Both decode with pkg/decap, which has the XDP program's semantics and
// counts the same outcomes under the same names.
package capture
