package replay

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/shadowtap/shadowtap/pkg/httpx"
	"github.com/shadowtap/shadowtap/pkg/verdict"
)

// Verdict is the comparison stage as replay sees it (*verdict.Engine). Replay
// keeps no comparison logic: it meets production's response and every
// target's answer to a replayed request and hands them over together.
type Verdict interface {
	// Submit hands over one exchange; the stage owns it from then on.
	Submit(x *verdict.Exchange)
	// Uncompared counts one target's answer that replay could not hand
	// over, by reason.
	Uncompared(target, reason string)
}

// Reasons replay gives Verdict.Uncompared.
const (
	// UncomparedUntracked: the table of exchanges awaiting production's
	// response was full when the request was dispatched.
	UncomparedUntracked = "untracked"
	// UncomparedBudget: keeping the exchange's bodies would have gone
	// beyond Config.CompareBudget.
	UncomparedBudget = "budget"
	// UncomparedInvalid: the mirrored request could not be rebuilt, so no
	// target was asked.
	UncomparedInvalid = "invalid"
)

// maxJoins bounds the table of replayed exchanges awaiting production's
// response. Beyond it, answers are counted uncompared "untracked".
const maxJoins = 1 << 16

// join meets production's response and the answers of every target the
// request was sent to, whichever comes first, and hands them to the
// comparison stage once all are in.
type join struct {
	// left counts the parts still to come: production's response, one per
	// target the request was queued to, and dispatch's own hold (so that
	// a fast answer cannot complete the join before dispatch has queued to
	// every target).
	left atomic.Int32
	over atomic.Bool  // beyond the compare budget: every answer is uncompared "budget"
	held atomic.Int64 // budget bytes reserved for this exchange's bodies

	mu      sync.Mutex
	x       verdict.Exchange
	targets []*target // the target of each of x.Answers
}

// compareState is the replayer's comparison bookkeeping; all of it is unused
// when Config.Verdict is nil.
type compareState struct {
	mu    sync.Mutex
	joins map[*httpx.Exchange]*join
	held  atomic.Int64 // bytes of bodies held in joins, at most Config.CompareBudget
}

// track registers ex to meet production's response; nil when the table is
// full. The join starts with two parts to come: production's response and
// dispatch's hold.
func (r *Replayer) track(ex *httpx.Exchange) *join {
	c := &r.cmp
	c.mu.Lock()
	if len(c.joins) >= maxJoins {
		c.mu.Unlock()
		return nil
	}
	j := &join{}
	c.joins[ex] = j
	c.mu.Unlock()
	j.left.Store(2)
	authority, path, query := splitTarget(ex.Req.Target)
	host := httpx.Get(ex.Req.Fields, "Host")
	if len(host) == 0 {
		host = authority
	}
	j.x = verdict.Exchange{
		Time:   time.Now(),
		Method: string(ex.Req.Method),
		Path:   string(path),
		Query:  string(query),
		Host:   string(host),
	}
	return j
}

// untrack forgets a join no target was sent to.
func (r *Replayer) untrack(ex *httpx.Exchange) {
	r.cmp.mu.Lock()
	delete(r.cmp.joins, ex)
	r.cmp.mu.Unlock()
}

// part marks one part of j as in; the last one completes the join.
func (r *Replayer) part(j *join) {
	if j.left.Add(-1) != 0 {
		return
	}
	v := r.cfg.Verdict
	switch {
	case j.over.Load():
		for _, t := range j.targets {
			t.stats.uncompared.Add(1)
			t.stats.awaiting.Add(-1)
			r.uncompared(t, UncomparedBudget)
		}
	case len(j.x.Answers) > 0:
		for _, t := range j.targets {
			t.stats.compared.Add(1)
			t.stats.awaiting.Add(-1)
		}
		// The budget covers the bodies until the engine is done with
		// them (compared, or dropped from its queue): it calls Done.
		held := j.held.Load()
		j.x.Done = func() { r.cmp.held.Add(-held) }
		v.Submit(&j.x) // the engine owns j.x from here on
		return
	}
	r.cmp.held.Add(-j.held.Load())
}

// reserve takes n bytes from the compare budget for j's bodies; false (and
// j marked over budget) when they do not fit.
func (r *Replayer) reserve(j *join, n int64) bool {
	if n <= 0 {
		return true
	}
	if j.over.Load() {
		return false
	}
	if r.cmp.held.Add(n) > r.cfg.CompareBudget {
		r.cmp.held.Add(-n)
		j.over.Store(true)
		return false
	}
	j.held.Add(n)
	return true
}

// production records production's response (or why it is missing) in the
// exchange's join, copying at most CompareBodyBytes of its body.
func (r *Replayer) production(j *join, ex *httpx.Exchange) {
	var p *verdict.Response
	var missing string
	if resp := ex.Resp; resp == nil || ex.Reason != httpx.RespOK || resp.TooLarge {
		missing = ex.Reason.String()
		if ex.Reason == httpx.RespOK {
			missing = httpx.RespTooLarge.String()
		}
	} else {
		p = &verdict.Response{
			Status:       resp.Status,
			Header:       headerOf(resp.Fields),
			BodyLen:      resp.BodyLen,
			BodyComplete: resp.BodyComplete,
			BodyHash:     resp.BodyHash,
		}
		if resp.Start > ex.Req.End {
			p.Latency = time.Duration(resp.Start - ex.Req.End)
		}
		body := resp.Body
		if limit := r.cfg.CompareBodyBytes; int64(len(body)) > limit {
			if p.BodyComplete {
				// The parser kept more than is compared: hash it whole.
				p.BodyHash = httpx.HashAdd(httpx.HashInit, body)
			}
			body = body[:limit]
			p.BodyComplete = false
		}
		if len(body) > 0 && r.reserve(j, int64(len(body))) {
			p.Body = append([]byte(nil), body...)
		}
	}
	j.mu.Lock()
	j.x.Production, j.x.ProductionMissing = p, missing
	j.mu.Unlock()
}

// headerOf builds production's header from the parsed fields, with few
// allocations: every value is a substring of one string, every name's first
// value a one-element, full-capacity slice of one array (a repeated name
// grows its own copy), and the common names are not allocated (canonicalName).
func headerOf(fields []httpx.Field) http.Header {
	size := 0
	for i := range fields {
		size += len(fields[i].Value)
	}
	var sb strings.Builder
	sb.Grow(size)
	for i := range fields {
		sb.Write(fields[i].Value)
	}
	all := sb.String()
	vals := make([]string, len(fields))
	h := make(http.Header, len(fields))
	off := 0
	for i := range fields {
		v := all[off : off+len(fields[i].Value)]
		off += len(fields[i].Value)
		k := canonicalName(fields[i].Name)
		if vs, ok := h[k]; ok {
			h[k] = append(vs, v)
			continue
		}
		vals[i] = v
		h[k] = vals[i : i+1 : i+1]
	}
	return h
}

// result files a target's outcome for comparison: its answer (a response,
// or Response nil and Error), or uncompared != "" for an outcome replay
// cannot hand over. jb.j nil means the request was dispatched while the join
// table was full.
func (r *Replayer) result(t *target, j *join, a verdict.Answer, uncompared string) {
	if r.cfg.Verdict == nil {
		return
	}
	switch {
	case j == nil:
		t.stats.uncompared.Add(1)
		r.uncompared(t, UncomparedUntracked)
		return
	case uncompared != "":
		t.stats.uncompared.Add(1)
		r.uncompared(t, uncompared)
	default:
		a.Target, a.Baseline = t.name, t.baseline
		t.stats.awaiting.Add(1)
		j.mu.Lock()
		j.x.Answers = append(j.x.Answers, a)
		j.targets = append(j.targets, t)
		j.mu.Unlock()
	}
	r.part(j)
}

// uncompared tells the comparison stage about an answer replay could not
// hand over. The baseline's are counted in replay's stats only: the stage
// reports targets compared with production, and the baseline is not one.
func (r *Replayer) uncompared(t *target, reason string) {
	if !t.baseline {
		r.cfg.Verdict.Uncompared(t.name, reason)
	}
}

// failAnswer is the answer of a target that did not answer.
func failAnswer(reason failReason, err error) verdict.Answer {
	switch reason {
	case failConnect:
		return verdict.Answer{Error: "connect"}
	case failTimeout:
		return verdict.Answer{Error: "timeout"}
	case failDrain:
		return verdict.Answer{Error: "stopped"}
	case failTooLarge:
		// The shadow answered, with a head beyond --max-response-header-bytes.
		return verdict.Answer{Error: failNames[failTooLarge]}
	}
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, io.ErrUnexpectedEOF) {
		return verdict.Answer{Error: "reset"}
	}
	return verdict.Answer{Error: "error"}
}

// body is what readBody learnt of a response body.
type body struct {
	n        int64  // bytes read
	kept     []byte // the first bytes, when keeping
	hash     uint64 // FNV-1a 64 of all of it, when it is longer than kept
	complete bool   // kept holds all of it
}

// readBody reads a response body to its end through buf, like io.Copy to
// io.Discard. With j set (the answer will be compared) it also keeps the
// first CompareBodyBytes bytes, reserved from the compare budget, and, as
// httpx does production's, hashes the whole body once it goes beyond them
// (a body that fits is not hashed: the comparison has it whole). hint is
// the Content-Length, -1 when unknown.
func (r *Replayer) readBody(rd io.Reader, buf []byte, j *join, hint int64) (body, error) {
	var b body
	keep := int64(0)
	if j != nil {
		keep = r.cfg.CompareBodyBytes
		if hint >= 0 && hint <= keep && r.reserve(j, hint) {
			b.kept = make([]byte, 0, hint)
		}
	}
	hashing := false
	for {
		m, err := rd.Read(buf)
		if m > 0 && j != nil && !j.over.Load() {
			chunk := buf[:m]
			room := keep - b.n
			if int64(m) > room && !hashing {
				// Beyond what is kept: from now on the hash covers the
				// whole body, the kept prefix first.
				b.hash, hashing = httpx.HashAdd(httpx.HashInit, b.kept), true
			}
			if hashing {
				b.hash = httpx.HashAdd(b.hash, chunk)
			}
			if room > 0 {
				k := chunk[:min(int64(m), room)]
				if int64(cap(b.kept)-len(b.kept)) >= int64(len(k)) || r.reserve(j, int64(len(k))) {
					b.kept = append(b.kept, k...)
				}
			}
		}
		b.n += int64(m)
		if err == io.EOF {
			b.complete = j != nil && !hashing && int64(len(b.kept)) == b.n
			if b.complete {
				b.hash = 0
			}
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

var _ Verdict = (*verdict.Engine)(nil)
