package httpx

// queue is a FIFO of exchanges in a ring buffer: taking the oldest does not
// move the others (a pipelined connection at MaxPending takes one for every
// request).
type queue struct {
	buf   []*Exchange // len(buf) is zero or a power of two
	first int         // index in buf of the oldest
	n     int
}

func (q *queue) len() int { return q.n }

// front returns the oldest; the queue must not be empty.
func (q *queue) front() *Exchange { return q.buf[q.first] }

// pop removes and returns the oldest; the queue must not be empty.
func (q *queue) pop() *Exchange {
	e := q.buf[q.first]
	q.buf[q.first] = nil
	q.first = (q.first + 1) & (len(q.buf) - 1)
	q.n--
	return e
}

func (q *queue) push(e *Exchange) {
	if q.n == len(q.buf) {
		buf := make([]*Exchange, max(8, 2*len(q.buf)))
		for i := 0; i < q.n; i++ {
			buf[i] = q.buf[(q.first+i)&(len(q.buf)-1)]
		}
		q.buf, q.first = buf, 0
	}
	q.buf[(q.first+q.n)&(len(q.buf)-1)] = e
	q.n++
}
