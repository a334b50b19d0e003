/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * shadowtap.h: the types the XDP program shares with Go (pkg/event, pkg/xdp)
 * and the header cursor its parser is built from.
 *
 * Every struct here has a twin in Go; bpf2go generates Go types from this
 * file's BTF, and pkg/xdp's tests check they agree with pkg/event.
 */
#ifndef SHADOWTAP_H
#define SHADOWTAP_H

#include <linux/types.h>

/* Payload bytes an event can carry: an inner frame of a 9001-byte MTU holds
 * at most 9001 - 20 (IPv4) - 20 (TCP) = 8961 payload bytes. Longer segments
 * are cut here and flagged truncated. */
#define MAX_PAYLOAD 9000

/* Event header flag bits (event.Flag*). */
#define EVENT_F_TRUNCATED 0x01

/* Direction (event.Direction). */
#define DIR_REQUEST 0
#define DIR_RESPONSE 1

/* Address family (event.Family*). */
#define FAMILY_IPV4 4
#define FAMILY_IPV6 6

/*
 * struct event_hdr is event.Header byte for byte (64 bytes, host order).
 * IPv4 addresses fill the first 4 bytes of saddr/daddr, the rest is zero.
 */
struct event_hdr {
	__u64 ts_ns;      /* bpf_ktime_get_ns() */
	__u8 saddr[16];
	__u8 daddr[16];
	__u32 vni;
	__u32 seq;        /* host order */
	__u32 ack;        /* host order */
	__u16 sport;      /* host order */
	__u16 dport;      /* host order */
	__u16 cap_len;    /* payload bytes following this header */
	__u16 wire_len;   /* payload bytes the IP header says were sent */
	__u8 family;
	__u8 tcp_flags;
	__u8 direction;
	__u8 flags;
};

/* The layout is pkg/event's: Decode reads these offsets. */
_Static_assert(sizeof(struct event_hdr) == 64, "event_hdr must be 64 bytes");
_Static_assert(__builtin_offsetof(struct event_hdr, saddr) == 8, "saddr");
_Static_assert(__builtin_offsetof(struct event_hdr, daddr) == 24, "daddr");
_Static_assert(__builtin_offsetof(struct event_hdr, vni) == 40, "vni");
_Static_assert(__builtin_offsetof(struct event_hdr, seq) == 44, "seq");
_Static_assert(__builtin_offsetof(struct event_hdr, ack) == 48, "ack");
_Static_assert(__builtin_offsetof(struct event_hdr, sport) == 52, "sport");
_Static_assert(__builtin_offsetof(struct event_hdr, dport) == 54, "dport");
_Static_assert(__builtin_offsetof(struct event_hdr, cap_len) == 56, "cap_len");
_Static_assert(__builtin_offsetof(struct event_hdr, wire_len) == 58, "wire_len");
_Static_assert(__builtin_offsetof(struct event_hdr, family) == 60, "family");
_Static_assert(__builtin_offsetof(struct event_hdr, tcp_flags) == 61, "tcp_flags");
_Static_assert(__builtin_offsetof(struct event_hdr, direction) == 62, "direction");
_Static_assert(__builtin_offsetof(struct event_hdr, flags) == 63, "flags");

/*
 * struct stats is the value of the per-CPU array "shadowtap_stats". The first nine
 * fields are event.Outcome in order: every packet increments exactly one.
 */
struct stats {
	__u64 pass_not_vxlan;
	__u64 pass_vni;
	__u64 pass_source;
	__u64 drop_malformed;
	__u64 drop_not_tcp;
	__u64 drop_fragment;
	__u64 drop_port;
	__u64 emit;
	__u64 lost_ringbuf;
	__u64 truncated; /* events emitted with EVENT_F_TRUNCATED */
	__u64 bytes;     /* bytes of every packet seen (frags of non-mirror frames excepted) */
};

/* One slot of the unserved-port sketch shadowtap_unsrv: the last port that
 * matched no served port in this slot (slot = port % UNSERVED_SLOTS) and how
 * many segments carried it since it took the slot. */
#define UNSERVED_SLOTS 64
struct unserved {
	__u32 port;
	__u32 pad;
	__u64 count;
};

/* VNIs an allowlist of at most this many is also copied into
 * config.vnis, compared inline instead of looked up in vni_allow. */
#define VNI_INLINE 8

/* Sources: an allowlist of at most this many prefixes is also copied into
 * config.src4/src6, compared inline instead of looked up in source_allow
 * (an LPM trie lookup is a helper call). */
#define SOURCE_INLINE 8

/* An inline source prefix: an address matches when addr & mask == net.
 * Both are in network byte order, as in the IP header. */
struct prefix4 {
	__be32 net;
	__be32 mask;
};

struct prefix6 {
	__be32 net[4];
	__be32 mask[4];
};

/*
 * struct config is the read-only global "config" (.rodata), which pkg/xdp
 * sets before loading the program. The verifier sees its fields as
 * constants: branches a configuration cannot take are not even run.
 */
struct config {
	__u16 vxlan_port;   /* outer UDP destination port, host order */
	__u16 _pad;
	__u32 vni_count;    /* entries in vni_allow; 0 = any VNI */
	__u32 source_count; /* entries in source_allow; 0 = any source */
	__u32 wakeup_bytes; /* wake the reader when this much is pending */
	__u32 vnis[VNI_INLINE]; /* the allowlist when vni_count <= VNI_INLINE */
	/* The source allowlist, split by family, when source_count <=
	 * SOURCE_INLINE (src4_count + src6_count == source_count). */
	__u32 src4_count;
	__u32 src6_count;
	struct prefix4 src4[SOURCE_INLINE];
	struct prefix6 src6[SOURCE_INLINE];
};

/*
 * struct source_key is the LPM trie key of "source_allow". The first data
 * byte is the family (FAMILY_IPV4 or FAMILY_IPV6) and always part of the
 * prefix (prefixlen = 8 + the address prefix length), so one trie holds both
 * families and ::/0 does not match IPv4 sources. IPv4 addresses fill the
 * first 4 bytes of addr.
 */
struct source_key {
	__u32 prefixlen;
	__u8 family;
	__u8 addr[16];
} __attribute__((packed));

/* ---- header cursor ---------------------------------------------------- */

#ifdef __BPF__

/*
 * struct cursor walks the linear part of the frame, one header at a time.
 * Each parse step checks its own bounds against end and advances pos; a step
 * that fails leaves pos where it was.
 */
struct cursor {
	void *pos;
	void *end;
};

#endif /* __BPF__ */

#endif /* SHADOWTAP_H */

