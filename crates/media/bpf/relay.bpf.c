// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only
//
// Hotline's in-kernel RTP relay: a tc (TCX) ingress program that forwards the audio
// packets of a bridged call from one leg's peer to the other leg's peer without waking
// Hotline, rewriting what the user-space relay would (addresses and ports, SSRC,
// sequence and timestamp offsets, payload type). Anything it does not know (another
// SSRC or payload type, DTMF events, RTCP, IPv6, IP options, fragments, a next hop
// without a neighbour entry) is left alone and reaches Hotline's socket as before.
//
// Built by crates/media/build.rs with `clang -target bpfel`; loaded by src/kernel.rs.
// No libbpf headers: the few helper and map declarations it needs are below.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int(*name)[val]
#define __type(name, val) typeof(val) *name

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)BPF_FUNC_map_lookup_elem;
static __u64 (*bpf_ktime_get_ns)(void) = (void *)BPF_FUNC_ktime_get_ns;
static long (*bpf_skb_pull_data)(struct __sk_buff *skb, __u32 len) = (void *)BPF_FUNC_skb_pull_data;
static long (*bpf_l3_csum_replace)(struct __sk_buff *skb, __u32 offset, __u64 from, __u64 to,
                                   __u64 size) = (void *)BPF_FUNC_l3_csum_replace;
static long (*bpf_l4_csum_replace)(struct __sk_buff *skb, __u32 offset, __u64 from, __u64 to,
                                   __u64 flags) = (void *)BPF_FUNC_l4_csum_replace;
static __s64 (*bpf_csum_diff)(__be32 *from, __u32 from_size, __be32 *to, __u32 to_size,
                              __wsum seed) = (void *)BPF_FUNC_csum_diff;
static long (*bpf_fib_lookup)(void *ctx, struct bpf_fib_lookup *params, int plen,
                              __u32 flags) = (void *)BPF_FUNC_fib_lookup;
static long (*bpf_redirect)(__u32 ifindex, __u64 flags) = (void *)BPF_FUNC_redirect;
static long (*bpf_skb_load_bytes)(const void *skb, __u32 offset, void *to, __u32 len) =
    (void *)BPF_FUNC_skb_load_bytes;
static void *(*bpf_ringbuf_reserve)(void *ringbuf, __u64 size, __u64 flags) =
    (void *)BPF_FUNC_ringbuf_reserve;
static void (*bpf_ringbuf_submit)(void *data, __u64 flags) = (void *)BPF_FUNC_ringbuf_submit;

#define ETH_LEN 14
#define IP_LEN 20
#define UDP_LEN 8
#define RTP_LEN 12
#define IP_OFF ETH_LEN
#define UDP_OFF (ETH_LEN + IP_LEN)
#define RTP_OFF (UDP_OFF + UDP_LEN)
#define IP_CSUM_OFF (IP_OFF + 10)
#define UDP_CSUM_OFF (UDP_OFF + 6)
#define LOOPBACK_IFINDEX 1
// The most audio a recorded packet may carry for the kernel to forward it (40 ms of
// G.711); a longer one goes to Hotline's socket.
#define MAX_TAP 320
#define AF_INET 2

// One direction of a bridged call, as Hotline's leg sees it: the packet arrived on our
// address `local` from the peer `remote` with SSRC `ssrc` (all in network order).
// Must match `FlowKey` in src/kernel.rs byte for byte.
struct flow_key {
    __u32 local_ip;
    __u32 remote_ip;
    __u16 local_port;
    __u16 remote_port;
    __u32 ssrc;
};

// What to send instead, and what the program saw. Must match `FlowAction` in
// src/kernel.rs byte for byte.
struct flow_action {
    __u32 src_ip;      // the other leg's address (network order)
    __u32 dst_ip;      // the other leg's peer (network order)
    __u16 src_port;    // network order
    __u16 dst_port;    // network order
    __u32 ssrc;        // our SSRC towards that peer (network order)
    __u32 ts_offset;   // added to the timestamp (host order)
    __u16 seq_offset;  // added to the sequence number (host order)
    __u8 in_pt;        // the only payload type forwarded here (audio)
    __u8 out_pt;       // what it becomes
    __u64 packets;     // forwarded so far
    __u64 bytes;       // RTP bytes (header + payload) forwarded
    __u64 last_ns;     // CLOCK_MONOTONIC of the last one
    __u32 last_ts;     // its timestamp as sent (host order)
    __u16 last_seq;    // its sequence number as sent (host order)
    __u16 pad;
    __u32 tag;         // non-zero: a copy of the audio goes to TAPS with this tag
    __u32 tap_dropped; // copies lost because TAPS was full
};

// A recorded call's audio, for Hotline's recorder: read every 20 ms, no wake-up per
// packet. Must match `TapRecord` in src/kernel.rs.
struct tap_record {
    __u64 ns;   // CLOCK_MONOTONIC when the packet was forwarded
    __u32 tag;
    __u16 len;  // payload bytes in `payload`
    __u16 pad;
    __u8 payload[MAX_TAP];
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 65536);
    __type(key, struct flow_key);
    __type(value, struct flow_action);
} FLOWS SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 1 << 22);
} TAPS SEC(".maps");

static __always_inline __u16 swap16(__u16 v) { return __builtin_bswap16(v); }
static __always_inline __u32 swap32(__u32 v) { return __builtin_bswap32(v); }

SEC("classifier")
int relay(struct __sk_buff *skb)
{
    if (skb->protocol != swap16(ETH_P_IP))
        return TC_ACT_UNSPEC;
    if ((void *)(long)skb->data + RTP_OFF + RTP_LEN > (void *)(long)skb->data_end &&
        bpf_skb_pull_data(skb, RTP_OFF + RTP_LEN) < 0)
        return TC_ACT_UNSPEC;
    void *data = (void *)(long)skb->data;
    void *end = (void *)(long)skb->data_end;
    if (data + RTP_OFF + RTP_LEN > end)
        return TC_ACT_UNSPEC;
    struct iphdr *ip = data + IP_OFF;
    if (ip->version != 4 || ip->ihl != 5 || ip->protocol != IPPROTO_UDP ||
        (ip->frag_off & swap16(0x3fff)) != 0)
        return TC_ACT_UNSPEC;
    struct udphdr *udp = data + UDP_OFF;
    __u8 *rtp = data + RTP_OFF;
    if ((rtp[0] >> 6) != 2)
        return TC_ACT_UNSPEC;

    struct flow_key key = {
        .local_ip = ip->daddr,
        .remote_ip = ip->saddr,
        .local_port = udp->dest,
        .remote_port = udp->source,
        .ssrc = *(__u32 *)(rtp + 8),
    };
    struct flow_action *act = bpf_map_lookup_elem(&FLOWS, &key);
    if (!act || (rtp[1] & 0x7f) != act->in_pt)
        return TC_ACT_UNSPEC;
    __u32 len = swap16(udp->len);
    __u32 payload = len > UDP_LEN + RTP_LEN ? len - UDP_LEN - RTP_LEN : 0;
    // A recorded packet's audio is copied as is: with padding, CSRCs or an extension
    // (P, X, CC), or longer than a copy holds, Hotline takes it.
    if (act->tag && ((rtp[0] & 0x3f) != 0 || payload == 0 || payload > MAX_TAP))
        return TC_ACT_UNSPEC;

    // Where the rewritten packet leaves: the route to the other leg's peer, or back
    // through loopback when that peer is on this host. Asked before anything is
    // changed, so a next hop the kernel cannot resolve yet leaves the packet intact
    // for Hotline's socket (whose send will resolve it).
    __u32 ifindex = LOOPBACK_IFINDEX;
    __u8 dmac[6] = {0}, smac[6] = {0};
    if (skb->ifindex != LOOPBACK_IFINDEX) {
        struct bpf_fib_lookup fib = {0};
        fib.family = AF_INET;
        fib.l4_protocol = IPPROTO_UDP;
        fib.tot_len = swap16(ip->tot_len);
        fib.ipv4_src = act->src_ip;
        fib.ipv4_dst = act->dst_ip;
        fib.ifindex = skb->ifindex;
        long rc = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
        if (rc == BPF_FIB_LKUP_RET_SUCCESS) {
            ifindex = fib.ifindex;
            __builtin_memcpy(dmac, fib.dmac, 6);
            __builtin_memcpy(smac, fib.smac, 6);
        } else if (rc != BPF_FIB_LKUP_RET_NOT_FWDED) {
            return TC_ACT_UNSPEC;
        }
    }

    __u16 seq = swap16(*(__u16 *)(rtp + 2)) + act->seq_offset;
    __u32 ts = swap32(*(__u32 *)(rtp + 4)) + act->ts_offset;
    __u32 old_addrs[2] = {ip->saddr, ip->daddr};
    __u32 new_addrs[2] = {act->src_ip, act->dst_ip};
    __u32 old_rest[4], new_rest[4];
    old_rest[0] = *(__u32 *)udp; // source and destination ports
    __builtin_memcpy(&old_rest[1], rtp, RTP_LEN);
    __u8 hdr[RTP_LEN];
    hdr[0] = rtp[0];
    hdr[1] = (rtp[1] & 0x80) | act->out_pt;
    *(__u16 *)(hdr + 2) = swap16(seq);
    *(__u32 *)(hdr + 4) = swap32(ts);
    *(__u32 *)(hdr + 8) = act->ssrc;
    __u16 ports[2] = {act->src_port, act->dst_port};
    __builtin_memcpy(&new_rest[0], ports, 4);
    __builtin_memcpy(&new_rest[1], hdr, RTP_LEN);

    if (act->tag) {
        struct tap_record *r = bpf_ringbuf_reserve(&TAPS, sizeof(*r), 0);
        if (!r) {
            __sync_fetch_and_add(&act->tap_dropped, 1);
        } else {
            r->ns = bpf_ktime_get_ns();
            r->tag = act->tag;
            r->pad = 0;
            __u32 n = payload & 0x1ff;
            if (n == 0 || n > MAX_TAP || bpf_skb_load_bytes(skb, RTP_OFF + RTP_LEN, r->payload, n) < 0)
                n = 0;
            r->len = n;
            bpf_ringbuf_submit(r, BPF_RB_NO_WAKEUP);
        }
    }

    // Headers first (packet pointers are void after a checksum helper), then sums.
    ip->saddr = act->src_ip;
    ip->daddr = act->dst_ip;
    udp->source = act->src_port;
    udp->dest = act->dst_port;
    __builtin_memcpy(rtp, hdr, RTP_LEN);
    struct ethhdr *eth = data;
    __builtin_memcpy(eth->h_dest, dmac, 6);
    __builtin_memcpy(eth->h_source, smac, 6);

    __s64 addr_diff = bpf_csum_diff(old_addrs, 8, new_addrs, 8, 0);
    __s64 rest_diff = bpf_csum_diff(old_rest, 16, new_rest, 16, 0);
    if (addr_diff < 0 || rest_diff < 0)
        return TC_ACT_SHOT;
    bpf_l3_csum_replace(skb, IP_CSUM_OFF, 0, addr_diff, 0);
    bpf_l4_csum_replace(skb, UDP_CSUM_OFF, 0, addr_diff,
                        BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0);
    bpf_l4_csum_replace(skb, UDP_CSUM_OFF, 0, rest_diff, BPF_F_MARK_MANGLED_0);

    __sync_fetch_and_add(&act->packets, 1);
    __sync_fetch_and_add(&act->bytes, len > UDP_LEN ? len - UDP_LEN : 0);
    act->last_ns = bpf_ktime_get_ns();
    act->last_seq = seq;
    act->last_ts = ts;
    return bpf_redirect(ifindex, 0);
}

// The kernel lends bpf_fib_lookup only to GPL-compatible programs: this file is also
// offered under the GPL (see its SPDX line), which is what this string tells it.
char LICENSE[] SEC("license") = "GPL";
