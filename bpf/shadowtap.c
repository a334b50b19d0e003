//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * shadowtap.c: the first stage of shadowtap's data path.
 *
 * An XDP program on the mirror target's interface. It recognises AWS VPC
 * Traffic Mirroring packets (VXLAN over UDP), checks the VNI and the outer
 * source against allowlists, strips the encapsulation and hands each inner
 * TCP segment of the mirrored service to Go (pkg/xdp) through a BPF ring
 * buffer: a struct event_hdr followed by the payload.
 *
 * Verdicts: an accepted mirror packet (VXLAN, VNI and source allowed) is
 * dropped once copied, whatever its inner packet is: it is a copy and the
 * host must not answer it. Every other packet passes untouched.
 *
 * Every packet ends in exactly one outcome counter of struct stats; bytes
 * adds every frame's length (for a frame that is not a mirror packet, only
 * its linear part: see frame_len and the not_vxlan label). The parse order
 * and the outcome of each failure are the contract in testenv/frames.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "shadowtap.h"

char __license[] SEC("license") = "Dual BSD/GPL";

/* ---- maps ------------------------------------------------------------- */

/* Map names carry the shadowtap_ prefix so `bpftool map list` says whose
 * they are; the kernel keeps 15 characters of a name, hence the short
 * suffixes. pkg/xdp pins them under their old short names (stats, ...). */

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct stats);
} shadowtap_stats SEC(".maps");

/* The configuration: read-only, set by pkg/xdp before the program is
 * loaded (CollectionSpec.Variables). volatile keeps clang from folding in
 * this default; the verifier then knows the loaded values and drops the
 * branches they rule out. */
volatile const struct config config = { .vxlan_port = 4789 };

/* Allowed VNIs (value unused). Empty (config.vni_count == 0) = any. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} shadowtap_vnis SEC(".maps");

/* Allowed outer sources. Empty (config.source_count == 0) = any. Looked up
 * only when there are more than SOURCE_INLINE. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct source_key);
	__type(value, __u8);
} shadowtap_srcs SEC(".maps");

/* Service ports, indexed by port (host order): non-zero = served. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u8);
} shadowtap_ports SEC(".maps");

/* Per-CPU memory of should_wake: not counters, not for users. */
struct wake_state {
	__u64 last_cons; /* consumer position at the last check */
	__u64 woken_at;  /* consumer position at the last forced wakeup */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct wake_state);
} shadowtap_wake SEC(".maps");

/* Ports of mirrored TCP segments that matched no served port, so shadowtap
 * can say what the mirror carries when --ports matches nothing. A small
 * sketch, not a count per port: slot = port % UNSERVED_SLOTS, the last port
 * seen in a slot owns it. Per CPU, so no atomics. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, UNSERVED_SLOTS);
	__type(key, __u32);
	__type(value, struct unserved);
} shadowtap_unsrv SEC(".maps");

/* Events: struct event_hdr + payload. pkg/xdp sets the size. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20);
} shadowtap_ring SEC(".maps");

/* ---- constants -------------------------------------------------------- */

#define VXLAN_FLAG_I 0x08
#define MAX_VLAN_TAGS 2       /* outer and inner: QinQ at most */
#define MAX_IPV6_EXT 4        /* extension headers skipped before giving up */
#define IPV4_MF 0x2000
#define IPV4_OFFSET 0x1fff
#define IPV4_MIN_HLEN 20
#define TCP_MIN_HLEN 20
/* No packet header sits this far into a frame: bounds the payload offset
 * for the verifier (pointer - pointer is an unbounded scalar to it). */
#define MAX_HDR_OFF 1024

struct vxlanhdr {
	__u8 flags;
	__u8 reserved1[3];
	__be32 vni_reserved2; /* VNI in the high 24 bits */
};

/* struct ethhdr is packed, so clang reads its EtherType a byte at a time;
 * this twin has the same layout with the EtherType 2-byte aligned. */
struct eth {
	__u8 dst[ETH_ALEN];
	__u8 src[ETH_ALEN];
	__be16 proto;
};

struct vlanhdr {
	__be16 tci;
	__be16 proto; /* the EtherType that follows the tag */
};

/* A parse step's result. PARSE_OK continues; the others end the packet. */
enum parse_result {
	PARSE_OK = 0,
	PARSE_SHORT,    /* the header does not fit in the frame */
	PARSE_OTHER,    /* a valid header of something we do not handle */
	PARSE_FRAGMENT, /* an IP fragment */
};

/* ---- parse steps ------------------------------------------------------ */

/* parse_eth: Ethernet plus up to MAX_VLAN_TAGS 802.1Q/802.1ad tags.
 * *proto is the EtherType after the tags, network order. */
static __always_inline enum parse_result parse_eth(struct cursor *c, __be16 *proto)
{
	struct eth *eth = c->pos;

	if ((void *)(eth + 1) > c->end)
		return PARSE_SHORT;
	c->pos = eth + 1;
	*proto = eth->proto;
	/* Untagged IPv4 is most frames: answer it first. */
	if (*proto == bpf_htons(ETH_P_IP))
		return PARSE_OK;

#pragma unroll
	for (int i = 0; i < MAX_VLAN_TAGS; i++) {
		if (*proto != bpf_htons(ETH_P_8021Q) && *proto != bpf_htons(ETH_P_8021AD))
			break;
		struct vlanhdr *vh = c->pos;
		if ((void *)(vh + 1) > c->end)
			return PARSE_SHORT;
		c->pos = vh + 1;
		*proto = vh->proto;
	}
	/* A third tag is not something we parse. */
	if (*proto == bpf_htons(ETH_P_8021Q) || *proto == bpf_htons(ETH_P_8021AD))
		return PARSE_OTHER;
	return PARSE_OK;
}

/* parse_ipv4: an IPv4 header of any IHL. *hdr points at it. */
static __always_inline enum parse_result parse_ipv4(struct cursor *c, struct iphdr **hdr)
{
	struct iphdr *iph = c->pos;

	if ((void *)(iph + 1) > c->end)
		return PARSE_SHORT;
	if (iph->version != 4)
		return PARSE_OTHER;
	/* ihl is 4 bits, so hlen <= 60: a bounded variable offset the verifier
	 * accepts on a packet pointer. */
	__u32 hlen = iph->ihl * 4;
	if (hlen < IPV4_MIN_HLEN)
		return PARSE_OTHER;
	if (c->pos + hlen > c->end)
		return PARSE_SHORT;
	c->pos += hlen;
	*hdr = iph;
	return PARSE_OK;
}

/* ipv4_carries_udp peeks at the protocol of the IPv4 header at the cursor
 * without parsing it: for the outer header, one load that rules out most
 * traffic that is not a mirror packet before the rest is looked at. */
static __always_inline int ipv4_carries_udp(const struct cursor *c)
{
	struct iphdr *iph = c->pos;

	if ((void *)(iph + 1) > c->end)
		return 0;
	return iph->protocol == IPPROTO_UDP;
}

/* parse_ipv6: the fixed IPv6 header. *hdr points at it. */
static __always_inline enum parse_result parse_ipv6(struct cursor *c, struct ipv6hdr **hdr)
{
	struct ipv6hdr *ip6h = c->pos;

	if ((void *)(ip6h + 1) > c->end)
		return PARSE_SHORT;
	if (ip6h->version != 6)
		return PARSE_OTHER;
	c->pos = ip6h + 1;
	*hdr = ip6h;
	return PARSE_OK;
}

/* skip_ipv6_ext: skips hop-by-hop, routing and destination-options headers.
 * *nexthdr comes in as the fixed header's next header and leaves as the
 * upper-layer protocol; *ext_len is the bytes skipped. */
static __always_inline enum parse_result skip_ipv6_ext(struct cursor *c, __u8 *nexthdr,
						       __u32 *ext_len)
{
	*ext_len = 0;
#pragma unroll
	for (int i = 0; i < MAX_IPV6_EXT; i++) {
		switch (*nexthdr) {
		case IPPROTO_HOPOPTS:
		case IPPROTO_ROUTING:
		case IPPROTO_DSTOPTS: {
			struct ipv6_opt_hdr *oh = c->pos;
			if ((void *)(oh + 1) > c->end)
				return PARSE_SHORT;
			/* hdrlen is a byte: len <= 2048, bounded for the verifier. */
			__u32 len = ((__u32)oh->hdrlen + 1) * 8;
			if (c->pos + len > c->end)
				return PARSE_SHORT;
			*nexthdr = oh->nexthdr;
			c->pos += len;
			*ext_len += len;
			break;
		}
		case IPPROTO_FRAGMENT:
			return PARSE_FRAGMENT;
		default:
			return PARSE_OK;
		}
	}
	/* More extension headers than we skip: malformed, as far as we care. */
	if (*nexthdr == IPPROTO_HOPOPTS || *nexthdr == IPPROTO_ROUTING ||
	    *nexthdr == IPPROTO_DSTOPTS)
		return PARSE_SHORT;
	if (*nexthdr == IPPROTO_FRAGMENT)
		return PARSE_FRAGMENT;
	return PARSE_OK;
}

/* parse_udp: a UDP header. */
static __always_inline enum parse_result parse_udp(struct cursor *c, struct udphdr **hdr)
{
	struct udphdr *udph = c->pos;

	if ((void *)(udph + 1) > c->end)
		return PARSE_SHORT;
	c->pos = udph + 1;
	*hdr = udph;
	return PARSE_OK;
}

/* parse_vxlan: a VXLAN header with the I flag. *vni is host order. */
static __always_inline enum parse_result parse_vxlan(struct cursor *c, __u32 *vni)
{
	struct vxlanhdr *vh = c->pos;

	if ((void *)(vh + 1) > c->end)
		return PARSE_SHORT;
	if (!(vh->flags & VXLAN_FLAG_I))
		return PARSE_OTHER;
	c->pos = vh + 1;
	*vni = bpf_ntohl(vh->vni_reserved2) >> 8;
	return PARSE_OK;
}

/* parse_tcp: a TCP header with its options. */
static __always_inline enum parse_result parse_tcp(struct cursor *c, struct tcphdr **hdr)
{
	struct tcphdr *tcph = c->pos;

	if ((void *)(tcph + 1) > c->end)
		return PARSE_SHORT;
	/* doff is 4 bits: hlen <= 60. */
	__u32 hlen = tcph->doff * 4;
	if (hlen < TCP_MIN_HLEN)
		return PARSE_SHORT;
	if (c->pos + hlen > c->end)
		return PARSE_SHORT;
	c->pos += hlen;
	*hdr = tcph;
	return PARSE_OK;
}

/* ---- outer checks ----------------------------------------------------- */

/* vni_allowed: a short allowlist is compared inline from the config (a
 * hash lookup is a helper call and a jhash); a longer one is looked up. */
static __always_inline int vni_allowed(__u32 vni)
{
	__u32 n = config.vni_count;

	if (n == 0)
		return 1;
	if (n > VNI_INLINE)
		return bpf_map_lookup_elem(&shadowtap_vnis, &vni) != NULL;
#pragma unroll
	for (int i = 0; i < VNI_INLINE; i++) {
		if (i >= n)
			break;
		if (config.vnis[i] == vni)
			return 1;
	}
	return 0;
}

/* source4_inline and source6_inline compare the outer source with the
 * inline prefixes of its family. */
static __always_inline int source4_inline(__be32 saddr)
{
	__u32 n = config.src4_count;

#pragma unroll
	for (int i = 0; i < SOURCE_INLINE; i++) {
		if (i >= n)
			break;
		if ((saddr & config.src4[i].mask) == config.src4[i].net)
			return 1;
	}
	return 0;
}

static __always_inline int source6_inline(const struct ipv6hdr *ip6)
{
	__u32 n = config.src6_count;
	/* Four word loads, not an array walk: the address is read once. */
	__be32 a0 = ip6->saddr.in6_u.u6_addr32[0];
	__be32 a1 = ip6->saddr.in6_u.u6_addr32[1];
	__be32 a2 = ip6->saddr.in6_u.u6_addr32[2];
	__be32 a3 = ip6->saddr.in6_u.u6_addr32[3];

	/* Not unrolled (clang 14 refuses this body): a bounded loop. */
	for (int i = 0; i < SOURCE_INLINE; i++) {
		if (i >= n)
			break;
		/* One test of the four words, not four branches. */
		__u32 diff = ((a0 & config.src6[i].mask[0]) ^ config.src6[i].net[0]) |
			     ((a1 & config.src6[i].mask[1]) ^ config.src6[i].net[1]) |
			     ((a2 & config.src6[i].mask[2]) ^ config.src6[i].net[2]) |
			     ((a3 & config.src6[i].mask[3]) ^ config.src6[i].net[3]);
		if (diff == 0)
			return 1;
	}
	return 0;
}

/* source_allowed: a short allowlist is compared inline; a longer one is
 * looked up in the LPM trie. The family is an integer, not a NULL test on a
 * header pointer: the verifier cannot tell whether a packet pointer is NULL
 * and would walk the impossible path. */
static __always_inline int source_allowed(int v6, struct iphdr *ip4, struct ipv6hdr *ip6)
{
	if (config.source_count == 0)
		return 1;
	if (config.source_count <= SOURCE_INLINE)
		return v6 ? source6_inline(ip6) : source4_inline(ip4->saddr);

	struct source_key key = { .prefixlen = 8 + 128 };
	if (v6) {
		key.family = FAMILY_IPV6;
		__builtin_memcpy(key.addr, &ip6->saddr, 16);
	} else {
		key.family = FAMILY_IPV4;
		__builtin_memcpy(key.addr, &ip4->saddr, 4);
	}
	return bpf_map_lookup_elem(&shadowtap_srcs, &key) != NULL;
}

/* ---- emit ------------------------------------------------------------- */

/* EMIT_CLASS reserves a record with room for exactly `room` payload bytes
 * (a constant: bpf_ringbuf_reserve needs one), copies the header and
 * cap_len payload bytes from the frame at off, and submits. cap_len <= room
 * is known on every path that calls it. Returns 0, or -1 when the ring is
 * full. A record is larger than its event; Go reads cap_len. */
#define EMIT_CLASS(room)                                                          \
	do {                                                                      \
		void *rec = bpf_ringbuf_reserve(&shadowtap_ring, sizeof(struct event_hdr) + (room), 0); \
		if (!rec)                                                         \
			return -1;                                                \
		__builtin_memcpy(rec, hdr, sizeof(struct event_hdr));             \
		/* The verifier forced this shape: clang may test cap_len in one \
		 * register and pass another, so the bound is checked again on a \
		 * fresh copy the compiler cannot see through. */                 \
		__u64 n = cap_len;                                                \
		asm volatile("" : "+r"(n));                                       \
		if (n > (room)) {                                                 \
			bpf_ringbuf_discard(rec, BPF_RB_NO_WAKEUP);               \
			return -2;                                                \
		}                                                                 \
		if (n > 0 && bpf_xdp_load_bytes(ctx, off, rec + sizeof(struct event_hdr), n) < 0) { \
			bpf_ringbuf_discard(rec, BPF_RB_NO_WAKEUP);               \
			return -2;                                                \
		}                                                                 \
		bpf_ringbuf_submit(rec, flags);                                   \
		return 0;                                                         \
	} while (0)

/* Payload room classes: a record is reserved at the smallest class that
 * holds the payload, so small segments do not take 9 KiB of ring each. */
#define ROOM_S 128
#define ROOM_M 512
#define ROOM_L 1536
#define ROOM_XL 4096

/* note_unserved records the likely server port (the lower one) of a segment
 * that matched no served port. */
static __always_inline void note_unserved(__u32 sport, __u32 dport)
{
	__u32 port = sport < dport ? sport : dport;
	__u32 slot = port % UNSERVED_SLOTS;
	struct unserved *u = bpf_map_lookup_elem(&shadowtap_unsrv, &slot);

	if (!u)
		return;
	if (u->port != port) {
		u->port = port;
		u->count = 0;
	}
	u->count++;
}

/* How often (in events per CPU) emit asks how much the ring holds. */
#define WAKEUP_CHECK_EVERY 16

/*
 * should_wake decides whether to wake the reader. Wakeups are batched: the
 * program never wakes it per event; the reader polls on a short timer
 * (pkg/xdp PollInterval) so latency stays bounded at low rates. At high
 * rates it is woken once wakeup_bytes are pending, but only when it has
 * stopped consuming (the consumer position did not move since the last
 * check on this CPU) and has not been woken at that position already: a
 * forced wakeup is an interrupt, and waking a reader that is busy reading
 * only costs.
 */
static __always_inline int should_wake(void)
{
	__u32 zero = 0;
	struct wake_state *ws = bpf_map_lookup_elem(&shadowtap_wake, &zero);

	if (!ws)
		return 0;
	if (bpf_ringbuf_query(&shadowtap_ring, BPF_RB_AVAIL_DATA) < config.wakeup_bytes)
		return 0;
	__u64 cons = bpf_ringbuf_query(&shadowtap_ring, BPF_RB_CONS_POS);
	int stalled = cons == ws->last_cons && cons != ws->woken_at;
	ws->last_cons = cons;
	if (!stalled)
		return 0;
	ws->woken_at = cons;
	return 1;
}

static __always_inline int emit(struct xdp_md *ctx, const struct event_hdr *hdr, __u32 off,
				__u32 cap_len, __u64 seq)
{
	__u64 flags = BPF_RB_NO_WAKEUP;

	if ((seq & (WAKEUP_CHECK_EVERY - 1)) == 0 && should_wake())
		flags = BPF_RB_FORCE_WAKEUP;

	/* The verifier needs cap_len bounded by the room on each path: the
	 * explicit upper checks below do that (the caller already capped it
	 * at MAX_PAYLOAD, but say it again where the verifier looks). */
	if (cap_len == 0)
		EMIT_CLASS(0);
	if (cap_len <= ROOM_S)
		EMIT_CLASS(ROOM_S);
	if (cap_len <= ROOM_M)
		EMIT_CLASS(ROOM_M);
	if (cap_len <= ROOM_L)
		EMIT_CLASS(ROOM_L);
	if (cap_len <= ROOM_XL)
		EMIT_CLASS(ROOM_XL);
	if (cap_len <= MAX_PAYLOAD)
		EMIT_CLASS(MAX_PAYLOAD);
	return -2;
}

/* ---- the program ------------------------------------------------------ */

/* frame_len is the frame's length, frags included. bpf_xdp_get_buff_len is
 * a helper call, which costs as much as a header parse: when the outer IP
 * length says the packet ends inside the linear part, there are no frags
 * (only Ethernet padding could follow) and the linear length is the answer. */
static __always_inline __u64 frame_len(struct xdp_md *ctx, void *data, void *data_end,
				       __u64 outer_end)
{
	__u64 linear = data_end - data;

	if (outer_end <= linear)
		return linear;
	return bpf_xdp_get_buff_len(ctx);
}

/* inner handles the inner frame of an accepted mirror packet. It returns the
 * outcome counter to bump; the verdict is XDP_DROP whatever it returns. */
static __always_inline __u64 *inner(struct xdp_md *ctx, struct cursor *c, void *data,
				    __u64 buf_len, struct stats *st, __u32 vni)
{
	__be16 proto;
	enum parse_result r;
	struct event_hdr hdr;
	__u32 ip_payload; /* bytes after the IP header(s), per the IP length */

	r = parse_eth(c, &proto);
	if (r == PARSE_SHORT)
		return &st->drop_malformed;
	if (r != PARSE_OK)
		return &st->drop_not_tcp;

	__builtin_memset(&hdr, 0, sizeof(hdr));

	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *iph;
		r = parse_ipv4(c, &iph);
		if (r == PARSE_SHORT)
			return &st->drop_malformed;
		if (r != PARSE_OK)
			return &st->drop_malformed; /* not version 4 or IHL < 5 */
		if (iph->frag_off & bpf_htons(IPV4_MF | IPV4_OFFSET))
			return &st->drop_fragment;
		if (iph->protocol != IPPROTO_TCP)
			return &st->drop_not_tcp;
		__u32 tot = bpf_ntohs(iph->tot_len);
		__u32 hlen = iph->ihl * 4;
		if (tot < hlen)
			return &st->drop_malformed;
		ip_payload = tot - hlen;
		hdr.family = FAMILY_IPV4;
		__builtin_memcpy(hdr.saddr, &iph->saddr, 4);
		__builtin_memcpy(hdr.daddr, &iph->daddr, 4);
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6h;
		__u8 nexthdr;
		__u32 ext_len;
		r = parse_ipv6(c, &ip6h);
		if (r != PARSE_OK)
			return &st->drop_malformed;
		nexthdr = ip6h->nexthdr;
		r = skip_ipv6_ext(c, &nexthdr, &ext_len);
		if (r == PARSE_SHORT)
			return &st->drop_malformed;
		if (r == PARSE_FRAGMENT)
			return &st->drop_fragment;
		if (r != PARSE_OK || nexthdr != IPPROTO_TCP)
			return &st->drop_not_tcp;
		__u32 plen = bpf_ntohs(ip6h->payload_len);
		if (plen < ext_len)
			return &st->drop_malformed;
		ip_payload = plen - ext_len;
		hdr.family = FAMILY_IPV6;
		__builtin_memcpy(hdr.saddr, &ip6h->saddr, 16);
		__builtin_memcpy(hdr.daddr, &ip6h->daddr, 16);
	} else {
		return &st->drop_not_tcp; /* ARP and the like */
	}

	struct tcphdr *tcph;
	if (parse_tcp(c, &tcph) != PARSE_OK)
		return &st->drop_malformed;
	__u32 tcp_hlen = tcph->doff * 4;
	if (ip_payload < tcp_hlen)
		return &st->drop_malformed;
	__u32 wire_len = ip_payload - tcp_hlen;

	__u32 sport = bpf_ntohs(tcph->source);
	__u32 dport = bpf_ntohs(tcph->dest);
	__u8 *served = bpf_map_lookup_elem(&shadowtap_ports, &dport);
	if (served && *served) {
		hdr.direction = DIR_REQUEST;
	} else {
		served = bpf_map_lookup_elem(&shadowtap_ports, &sport);
		if (!served || !*served) {
			note_unserved(sport, dport);
			return &st->drop_port;
		}
		hdr.direction = DIR_RESPONSE;
	}

	/* Payload offset. pointer - pointer is an unknown scalar to the
	 * verifier; bound it. */
	__u64 off = c->pos - data;
	if (off > MAX_HDR_OFF)
		return &st->drop_malformed;
	if (buf_len < off)
		return &st->drop_malformed;
	__u64 avail = buf_len - off; /* bytes that arrived: Ethernet padding included */

	__u32 cap_len = wire_len;
	if (avail < cap_len)
		cap_len = avail;
	if (cap_len > MAX_PAYLOAD)
		cap_len = MAX_PAYLOAD;
	if (cap_len < wire_len)
		hdr.flags |= EVENT_F_TRUNCATED;

	hdr.ts_ns = bpf_ktime_get_ns();
	hdr.vni = vni;
	hdr.seq = bpf_ntohl(tcph->seq);
	hdr.ack = bpf_ntohl(tcph->ack_seq);
	hdr.sport = sport;
	hdr.dport = dport;
	hdr.cap_len = cap_len;
	/* wire_len is at most 65535 - 20: it fits the u16. */
	hdr.wire_len = wire_len;
	hdr.tcp_flags = ((__u8 *)tcph)[13];

	int err = emit(ctx, &hdr, off, cap_len, st->emit + st->lost_ringbuf);
	if (err == -1)
		return &st->lost_ringbuf;
	if (err < 0)
		return &st->drop_malformed;
	if (hdr.flags & EVENT_F_TRUNCATED)
		st->truncated++;
	return &st->emit;
}

SEC("xdp.frags")
int shadowtap_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct cursor c = { .pos = data, .end = data_end };
	__u32 zero = 0;
	__be16 proto;
	struct iphdr *ip4 = NULL;
	struct ipv6hdr *ip6 = NULL;
	int v6 = 0;
	__u64 outer_end = 0; /* frame offset where the outer IP packet ends */
	struct udphdr *udph;
	__u32 vni;

	struct stats *st = bpf_map_lookup_elem(&shadowtap_stats, &zero);
	if (!st)
		return XDP_PASS; /* cannot happen: an array of one entry */

	/* Outer headers: anything we do not recognise passes untouched. */
	if (parse_eth(&c, &proto) != PARSE_OK)
		goto not_vxlan;
	if (proto == bpf_htons(ETH_P_IP)) {
		if (!ipv4_carries_udp(&c))
			goto not_vxlan;
		if (parse_ipv4(&c, &ip4) != PARSE_OK)
			goto not_vxlan;
		/* An outer fragment is not a whole VXLAN packet: the host
		 * reassembles it. */
		if (ip4->frag_off & bpf_htons(IPV4_MF | IPV4_OFFSET))
			goto not_vxlan;
		outer_end = (void *)ip4 - data + bpf_ntohs(ip4->tot_len);
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		if (parse_ipv6(&c, &ip6) != PARSE_OK)
			goto not_vxlan;
		v6 = 1;
		if (ip6->nexthdr != IPPROTO_UDP)
			goto not_vxlan;
		outer_end = (void *)ip6 - data + sizeof(*ip6) + bpf_ntohs(ip6->payload_len);
	} else {
		goto not_vxlan;
	}
	if (parse_udp(&c, &udph) != PARSE_OK)
		goto not_vxlan;
	if (udph->dest != bpf_htons(config.vxlan_port))
		goto not_vxlan;

	/* From here on the frame is counted whole, frags included. */
	__u64 buf_len = frame_len(ctx, data, data_end, outer_end);
	st->bytes += buf_len;

	/* The source is checked before the VXLAN header is read: nothing from
	 * a source that is not allowed is parsed further or dropped. */
	if (!source_allowed(v6, ip4, ip6)) {
		st->pass_source++;
		return XDP_PASS;
	}
	/* UDP to the VXLAN port from an allowed source: a VXLAN header that is
	 * cut short or lacks the I flag is a broken mirror packet. */
	if (parse_vxlan(&c, &vni) != PARSE_OK) {
		st->drop_malformed++;
		return XDP_DROP;
	}
	if (!vni_allowed(vni)) {
		st->pass_vni++;
		return XDP_PASS;
	}

	/* An accepted mirror packet: whatever is inside, it is dropped. */
	__u64 *outcome = inner(ctx, &c, data, buf_len, st, vni);
	(*outcome)++;
	return XDP_DROP;

not_vxlan:
	/* The linear part only: bpf_xdp_get_buff_len is a helper call, which
	 * costs as much as the rest of this path. Only a multi-buffer frame
	 * that is not a mirror packet is counted short. */
	st->bytes += data_end - data;
	st->pass_not_vxlan++;
	return XDP_PASS;
}
