package testenv

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// AppKind says which deployment a lab app plays in a comparison.
type AppKind int

const (
	// AppProduction is the production service (mirrored).
	AppProduction AppKind = iota
	// AppShadow is the new stack, which differs from production on purpose
	// on some routes, the way a migration does (see AppRoutes).
	AppShadow
	// AppBaseline is a second deployment of production's code (the old
	// code, for --baseline): it answers as production does, except for the
	// fields that vary on every request in both (e.g. "generated_at").
	AppBaseline
)

func (k AppKind) String() string {
	switch k {
	case AppProduction:
		return "production"
	case AppShadow:
		return "shadow"
	case AppBaseline:
		return "baseline"
	}
	return "app" + strconv.Itoa(int(k))
}

// SearchDelay is how much slower the shadow app answers GET /search.
const SearchDelay = 80 * time.Millisecond

// AppRoute is one route of the lab apps and what comparing the shadow app
// with production on it must find.
type AppRoute struct {
	// Route is the route template the comparison stage should derive, as
	// written in metric labels ("GET /api/users/{id}").
	Route string
	// Request returns the i-th request of a client on this route.
	Request func(i int) Request
	// Kind is the kind of difference every exchange on the route has
	// ("status", "header", "cookie", "body"), or "" for none; Latency says
	// the shadow is slower on the route (a route-level finding).
	Kind    string
	Latency bool
	// Why says what differs, or what differs only in ways that must not count.
	Why string
}

// AppRoutes lists the routes of the lab apps. Every app also sets Date,
// Server and ETag headers that differ between deployments (default noise).
func AppRoutes() []AppRoute {
	gz := http.Header{"Accept-Encoding": {"gzip"}}
	return []AppRoute{
		{Route: "GET /api/users/{id}", Kind: "body",
			Request: func(i int) Request { return Request{Target: fmt.Sprintf("/api/users/%d", 100+i)} },
			Why:     "the shadow changes $.email; generated_at differs on every request in every app (noise with a baseline)"},
		{Route: "GET /api/items", Kind: "",
			Request: func(i int) Request { return Request{Target: fmt.Sprintf("/api/items?page=%d", i%3)} },
			Why:     "the shadow writes the same JSON with another key order and spacing: not a difference"},
		{Route: "GET /static/app.js", Kind: "",
			Request: func(i int) Request {
				if i%2 == 0 {
					return Request{Target: "/static/app.js", Header: gz}
				}
				return Request{Target: "/static/app.js"}
			},
			Why: "production gzips at level 9, the shadow at level 1 or not at all: the same bytes, not a difference"},
		{Route: "GET /session", Kind: "cookie",
			Request: func(i int) Request {
				return Request{Target: "/session", Host: "shop.example.com",
					Header: http.Header{"Cookie": {"sid=client-s3cret"}, "Authorization": {"Bearer auth-s3cret"}}}
			},
			Why: "production sets sid with Domain=.shop.example.com, the shadow without Domain (issue 8's incident)"},
		{Route: "GET /report/{id}", Kind: "status",
			Request: func(i int) Request { return Request{Target: fmt.Sprintf("/report/%d?user=alice&format=csv", 7000+i)} },
			Why:     "the shadow answers 500"},
		{Route: "GET /page/{id}", Kind: "header",
			Request: func(i int) Request { return Request{Target: fmt.Sprintf("/page/%d", 10+i)} },
			Why:     "the shadow drops Cache-Control"},
		{Route: "GET /search", Kind: "", Latency: true,
			Request: func(i int) Request { return Request{Target: fmt.Sprintf("/search?q=term%d", i)} },
			Why:     "the shadow answers the same, SearchDelay later"},
	}
}

// AppHandler returns the lab app of kind k: a small shop API whose shadow
// variant differs from production on purpose (see AppRoutes).
func AppHandler(k AppKind) http.Handler {
	a := &app{kind: k}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/users/{id}", a.user)
	mux.HandleFunc("GET /api/items", a.items)
	mux.HandleFunc("GET /static/app.js", a.script)
	mux.HandleFunc("GET /session", a.session)
	mux.HandleFunc("GET /report/{id}", a.report)
	mux.HandleFunc("GET /page/{id}", a.page)
	mux.HandleFunc("GET /search", a.search)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Server", map[AppKind]string{AppProduction: "shop/1.4 (old)", AppShadow: "shop/2.0 (new)", AppBaseline: "shop/1.4 (old, baseline)"}[k])
		h.Set("X-Request-Id", a.token())
		h.Set("ETag", `"`+k.String()+"-"+strconv.FormatUint(a.n.Add(1), 10)+`"`)
		mux.ServeHTTP(w, r)
	})
}

type app struct {
	kind AppKind
	n    atomic.Uint64
}

func (a *app) shadow() bool { return a.kind == AppShadow }

func (a *app) token() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (a *app) user(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.Atoi(r.PathValue("id"))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	email := fmt.Sprintf("user%d@example.com", id)
	if a.shadow() {
		email = fmt.Sprintf("user%d@users.example.com", id) // the new code's bug
	}
	w.Header().Set("Content-Type", "application/json")
	// generated_at varies on every request, in every deployment.
	fmt.Fprintf(w, `{"id":%d,"name":"User %d","email":%q,"plan":"pro","tags":["a","b"],"generated_at":%d}`,
		id, id, email, time.Now().UnixNano())
}

func (a *app) items(w http.ResponseWriter, r *http.Request) {
	page, _ := strconv.Atoi(r.URL.Query().Get("page"))
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	var b bytes.Buffer
	b.WriteString(`{"page":` + strconv.Itoa(page) + `,"items":[`)
	for i := range 5 {
		if i > 0 {
			b.WriteByte(',')
		}
		id := page*5 + i
		if a.shadow() {
			// The same object, keys in another order, other spacing,
			// a number written another way.
			fmt.Fprintf(&b, `{ "price": %d.0, "name": "item %d", "id": %d }`, id*3, id, id)
		} else {
			fmt.Fprintf(&b, `{"id":%d,"name":"item %d","price":%d}`, id, id, id*3)
		}
	}
	b.WriteString(`]}`)
	w.Write(b.Bytes())
}

// AppScript is the body of GET /static/app.js before content coding.
func AppScript() []byte {
	var b bytes.Buffer
	for i := range 400 {
		fmt.Fprintf(&b, "function f%d(x) { return x * %d + %q; }\n", i, i, strings.Repeat("s", i%17))
	}
	return b.Bytes()
}

func (a *app) script(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/javascript")
	h.Set("Cache-Control", "public, max-age=86400")
	h.Set("Vary", "Accept-Encoding")
	level := gzip.BestCompression
	if a.shadow() {
		if !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			w.Write(AppScript()) // identity
			return
		}
		level = gzip.BestSpeed
	}
	h.Set("Content-Encoding", "gzip")
	zw, _ := gzip.NewWriterLevel(w, level)
	zw.Write(AppScript())
	zw.Close()
}

func (a *app) session(w http.ResponseWriter, r *http.Request) {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	c := &http.Cookie{Name: "sid", Value: a.token(), Path: "/", MaxAge: 3600, HttpOnly: true, SameSite: http.SameSiteLaxMode}
	if !a.shadow() {
		c.Domain = "." + host // the old stack scopes the cookie to every subdomain
	}
	http.SetCookie(w, c)
	w.Header().Set("Content-Type", "application/json")
	w.Write([]byte(`{"ok":true}`))
}

func (a *app) report(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/csv")
	if a.shadow() {
		w.WriteHeader(http.StatusInternalServerError)
		w.Write([]byte("report generator failed\n"))
		return
	}
	fmt.Fprintf(w, "id,total\n%s,42\n", r.PathValue("id"))
}

func (a *app) page(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if !a.shadow() {
		w.Header().Set("Cache-Control", "public, max-age=300")
	}
	fmt.Fprintf(w, "<!doctype html><title>page %s</title><p>page %s</p>\n", r.PathValue("id"), r.PathValue("id"))
}

func (a *app) search(w http.ResponseWriter, r *http.Request) {
	if a.shadow() {
		time.Sleep(SearchDelay)
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"q":%q,"results":[]}`, r.URL.Query().Get("q"))
}

// App is a lab app serving in a namespace.
type App struct {
	Addr net.Addr
	NS   string
	Kind AppKind
	srv  *http.Server
	done chan struct{}
}

// StartApp serves the lab app of kind k in namespace ns of lab on addr
// (e.g. ":8080"). It stops when ctx ends or on Close.
func StartApp(ctx context.Context, lab *Lab, ns, addr string, k AppKind) (*App, error) {
	ln, err := lab.Listen(ns, "tcp", addr)
	if err != nil {
		return nil, err
	}
	a := &App{Addr: ln.Addr(), NS: ns, Kind: k, done: make(chan struct{}),
		srv: &http.Server{Handler: AppHandler(k), ReadHeaderTimeout: 30 * time.Second}}
	go func() {
		defer close(a.done)
		_ = a.srv.Serve(ln)
	}()
	go func() {
		select {
		case <-ctx.Done():
			_ = a.Close()
		case <-a.done:
		}
	}()
	return a, nil
}

// Close stops the app, letting requests in progress finish (up to 5 s).
func (a *App) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := a.srv.Shutdown(ctx)
	if err != nil {
		err = errors.Join(err, a.srv.Close())
	}
	<-a.done
	if err != nil {
		return fmt.Errorf("stopping the %s app %s in %s: %w", a.Kind, a.Addr, a.NS, err)
	}
	return nil
}
