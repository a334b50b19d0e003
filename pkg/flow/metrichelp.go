package flow

// MetricHelp gives each counter of the flow stage the sentence shown in
// /metrics (shadowtap_flow_*); see metrics.Helper.
func (StatsSnapshot) MetricHelp() map[string]string {
	return map[string]string{
		"EventsIn":          "Captured segments handed to the shards.",
		"QueueFullEvents":   "Segments dropped because their shard's queue was full (the shard fell behind the capture).",
		"QueueFullBatches":  "Batches of segments dropped because a shard's queue was full.",
		"DamageOverflow":    "Times a shard's list of connections damaged by a drop overflowed, so all its connections were given a gap.",
		"BatchesDispatched": "Batches of segments handed to the shards.",
		"ShutdownEvents":    "Segments that reached a shard after it had stopped, at shutdown.",
		"SegmentsIn":        "Segments processed by the shards; each ends in exactly one seg_* outcome.",
		"SegInOrder":        "Segments that carried new bytes at the expected sequence number (delivered without copying).",
		"SegHeld":           "Segments that arrived ahead of a missing one and were held until the gap filled.",
		"SegDuplicate":      "Segments that carried no new bytes (retransmissions or mirror duplicates).",
		"SegEmpty":          "Segments without payload (ACK, SYN, FIN, RST) on a tracked connection.",
		"SegNoConn":         "Segments without payload and without SYN for a connection not tracked: ignored.",
		"SegMalformed":      "Segments with an invalid header: dropped.",
		"SegOverlap":        "Segments partly new and partly already seen: the old part was trimmed.",
		"SegTruncated":      "Segments the mirror truncated or captured short.",
		"OverlapConflict":   "Segments whose overlapping bytes differed from the first copy (the first was kept).",
		"ConflictBytes":     "Overlapping bytes that differed from the first copy.",
		"BytesDelivered":    "Reassembled bytes handed to the HTTP parser.",
		"BytesHeld":         "Out-of-order bytes held now, waiting for a missing segment.",
		"Gaps":              "Gaps in a byte stream: the message spanning one is dropped, parsing resynchronises.",
		"HoldCapGaps":       "Gaps declared because the out-of-order hold cap was reached while waiting for missing bytes.",
		"FlushGaps":         "Gaps declared when held data was flushed at close or after a drop.",
		"TruncationGaps":    "Gaps declared for segments the mirror truncated.",
		"DamagedConns":      "Connections marked damaged because a segment of theirs was dropped at a full shard queue.",
		"BeyondFINBytes":    "Payload bytes after a direction's FIN: discarded.",
		"ReusedConns":       "Tracked connections replaced by a SYN with a new initial sequence number.",
		"ConnsTracked":      "Connections tracked now, over all shards.",
		"ConnsOpened":       "Connections opened (with a SYN or joined mid-stream).",
		"ConnsMidStream":    "Connections joined mid-stream, without seeing their SYN.",
		"ClosedFIN":         "Connections closed by FIN in both directions.",
		"ClosedRST":         "Connections closed by RST.",
		"ClosedIdle":        "Connections forgotten after --idle-timeout without a segment.",
		"ClosedEvicted":     "Connections evicted because the shard's table was full (--max-conns, least recently used first).",
		"ClosedShutdown":    "Connections closed at shutdown.",

		"ConnsUnconfirmedTracked": "Tracked connections not yet confirmed (no payload delivered in both directions): they share a table of --max-conns/8 per shard and are evicted first.",
		"ConnsConfirmed":          "Connections confirmed by payload delivered in both directions (a request byte and a response byte).",
		"EvictedUnconfirmed":      "Of the evicted connections, those not yet confirmed (a flood of new flows evicts only these).",
	}
}
