// Package frames builds AWS VPC Traffic Mirroring frames (outer Ethernet, IP,
// UDP, VXLAN around an inner Ethernet frame) and holds the one table of test
// vectors that every capture path of shadowtap must agree on: the XDP program
// in bpf/ through BPF_PROG_TEST_RUN, and the Go decoder in pkg/decap used by
// the socket and pcap sources. It sits before the data path: it produces the
// input of the capture stage and the events that stage must hand on.
//
// # Builder
//
// VXLAN(Outer, Inner) builds a whole mirror frame, Ethernet(Inner) a plain
// frame, VXLANRaw wraps arbitrary inner bytes, UDPPayload returns what a UDP
// socket on the VXLAN port receives, and Cut cuts any frame short. Each
// builder returns a Layout with the offset of every header, so a test can cut
// a frame inside a chosen header. Checksums of the inner packet are not
// filled in (the receiver never checks them, and AWS truncation breaks them
// anyway); outer IPv4 header checksums are.
//
// # Semantics (the contract the vectors encode)
//
// Parsing order and the outcome of each failure. Every frame ends in exactly
// one event.Outcome; the verdict is XDP_PASS for the pass_* outcomes and
// XDP_DROP for all others (an accepted mirror packet is a copy: it is dropped
// after it is counted or copied).
//
//  1. Outer Ethernet, then 0–2 VLAN tags (TPID 0x8100 or 0x88a8, either
//     position). Cut short, a third tag, or an EtherType other than IPv4/IPv6:
//     pass_not_vxlan.
//  2. Outer IPv4 (version 4, IHL ≥ 5, the whole IHL present; options
//     skipped) or IPv6 (40 bytes, next header must be UDP directly). Anything
//     else, cut short, or an outer IPv4 fragment (MF set or offset ≠ 0: the
//     host reassembles those, so the socket source sees them whole): pass_not_vxlan.
//  3. UDP: the 8-byte header present and destination port == VXLAN port,
//     else pass_not_vxlan. Outer IP and UDP length fields are not checked:
//     the inner frame is everything after the VXLAN header to the end of the
//     packet.
//  4. Outer source allowlist (empty = any): not allowed → pass_source. This
//     comes before the VXLAN header is read, so nothing from a source that is
//     not allowed is ever dropped or parsed further.
//  5. VXLAN header: 8 bytes present and the I flag (0x08 in the first byte)
//     set, else drop_malformed. Other flag and reserved bits are ignored.
//  6. VNI allowlist (empty = any): not allowed → pass_vni.
//  7. Inner Ethernet (14 bytes), 0–2 VLAN tags: cut short → drop_malformed.
//     EtherType not IPv4/IPv6 (ARP, a third tag, …) → drop_not_tcp.
//  8. Inner IPv4: 20 bytes present, version 4, IHL ≥ 5 and the whole IHL
//     present, else drop_malformed. Then fragment (MF set or offset ≠ 0) →
//     drop_fragment (checked before the protocol). Then protocol ≠ TCP →
//     drop_not_tcp.
//     Inner IPv6: 40 bytes present and version 6, else drop_malformed. Then up
//     to 4 extension headers of type hop-by-hop (0), routing (43) or
//     destination options (60) are skipped, each needing its 2 first bytes
//     and its whole (len+1)*8 bytes present, else drop_malformed. A fragment
//     header (44) met at any point → drop_fragment. A fifth skippable header
//     → drop_malformed. Then next header ≠ TCP → drop_not_tcp.
//  9. TCP: 20 bytes present, data offset ≥ 5, and the whole data offset
//     (options included) present, else drop_malformed. The IP length must
//     cover the IP header, extension headers and TCP header, else
//     drop_malformed.
//  10. Service ports (empty = none served): destination port served → request
//     direction; else source port served → response direction; else
//     drop_port. Both served → request.
//  11. Every TCP segment that gets here is emitted, with or without payload:
//     SYN, FIN, RST and pure ACKs give events with cap_len 0 (reassembly needs
//     them). A failed hand-over (ring buffer or queue full) is lost_ringbuf
//     instead of emit.
//
// Event fields (event.Header):
//   - SrcAddr/DstAddr: the inner addresses, 16 bytes; IPv4 in the first 4
//     bytes, the other 12 zero. Family 4 or 6.
//   - SrcPort/DstPort, Seq, Ack: host byte order. TCPFlags: byte 13 of the TCP
//     header, whole (CWR/ECE included). VNI: the 24-bit VNI.
//   - Direction: as in step 10.
//   - WireLen: payload bytes the IP header says the segment carried: IPv4
//     total length − IHL×4 − TCP data offset×4; IPv6 payload length −
//     extension headers − TCP data offset×4.
//   - CapLen: payload bytes present = min(WireLen, bytes after the TCP header
//     up to the end of the frame). Bytes beyond the IP length (Ethernet
//     padding) are never payload.
//   - Flags: FlagTruncated when CapLen < WireLen (the mirror cut the packet).
//   - TimeNs: set by the capture source, not part of the vectors.
//
// Counters: each frame adds 1 to its outcome; Bytes adds the length of every
// frame seen, whatever its outcome (for the socket source: the UDP payload
// length); Truncated adds 1 for each emitted event flagged truncated.
package frames
