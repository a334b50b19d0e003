package httpx

// MetricHelp gives each counter of the HTTP stage the sentence shown in
// /metrics (shadowtap_http_*); see metrics.Helper.
func (StatsSnapshot) MetricHelp() map[string]string {
	return map[string]string{
		"Conns":                   "Connections the HTTP parser handled.",
		"Requests":                "Complete requests parsed and handed to replay (too large ones included).",
		"Responses":               "Final responses parsed (1xx interim responses excluded, too large ones included).",
		"RequestsTooLarge":        "Requests beyond --max-header-bytes or --max-body-bytes: counted, never replayed.",
		"ResponsesTooLarge":       "Production responses beyond --max-header-bytes or --max-body-bytes.",
		"RequestsGap":             "Requests in progress dropped because a gap in the capture swallowed part of them.",
		"ResponsesGap":            "Responses in progress dropped because a gap in the capture swallowed part of them.",
		"RequestsMalformed":       "Requests dropped as malformed HTTP (parsing then resynchronises).",
		"ResponsesMalformed":      "Responses dropped as malformed HTTP (parsing then resynchronises).",
		"RequestsIncomplete":      "Requests in progress when their connection closed or was given up.",
		"ResponsesIncomplete":     "Responses in progress when their connection closed or was given up.",
		"RequestResyncs":          "Request lines found by scanning after a gap or when joining a connection mid-stream.",
		"ResponseResyncs":         "Status lines found by scanning after a gap or when joining a connection mid-stream.",
		"RequestSkippedBytes":     "Bytes skipped in the request direction while looking for the next request line.",
		"ResponseSkippedBytes":    "Bytes skipped in the response direction while looking for the next status line.",
		"GaveUpNotHTTP":           "Connections no longer parsed because they are not HTTP/1.x (e.g. TLS).",
		"GaveUpUpgrade":           "Connections no longer parsed after 101 Switching Protocols (e.g. WebSocket).",
		"GaveUpConnect":           "Connections no longer parsed after a CONNECT request.",
		"ResponsesUnpaired":       "Production responses with no request to pair with: dropped.",
		"Interim":                 "1xx interim responses skipped (100 Continue, 103 Early Hints, ...).",
		"Answered":                "Exchanges that ended with production's response.",
		"NoRespGap":               "Exchanges that ended without production's response because of a gap in the response direction.",
		"NoRespClosed":            "Exchanges that ended without production's response because the connection ended first.",
		"NoRespGaveUp":            "Exchanges that ended without production's response because parsing of the response direction stopped.",
		"NoRespOverflow":          "Exchanges that ended without production's response because too many requests were waiting on the connection.",
		"RequestsBodySkipped":     "Request bodies measured, not kept, because the request will not be replayed (method, path, sample).",
		"RequestBodySkippedBytes": "Bytes of request bodies measured, not kept, because the request will not be replayed.",
		"RequestsOverBudget":      "Request bodies dropped because keeping them would have gone beyond --body-budget: the request is not replayed (filtered body_budget).",
		"HeadsOverBudget":         "Requests and responses dropped (also counted too large) because their head in progress, beyond its first 2 KiB, did not fit in what --body-budget had left.",
		"BodyBudgetHeld":          "Bytes of request bodies held now by the parser and the replay queues, at most --body-budget.",
	}
}
