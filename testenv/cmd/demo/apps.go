package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// app is the small web shop the demo mirrors. The shadow variant differs from
// production on purpose, the way a migration does: one API item is broken,
// search moved, and the logo is re-encoded.
func app(shadow bool) http.Handler {
	mux := http.NewServeMux()
	page := func(title string) []byte {
		var b bytes.Buffer
		fmt.Fprintf(&b, "<!doctype html><html><head><title>%s</title><link rel=stylesheet href=/static/site.css><script src=/static/app.js></script></head><body>", title)
		for i := 0; i < 40; i++ {
			fmt.Fprintf(&b, "<p>item %d of %s — lorem ipsum dolor sit amet</p>\n", i, title)
		}
		b.WriteString("</body></html>")
		return b.Bytes()
	}
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Write(page("home"))
	})
	mux.HandleFunc("GET /product/{id}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Write(page("product " + r.PathValue("id")))
	})
	mux.HandleFunc("GET /static/{file}", func(w http.ResponseWriter, r *http.Request) {
		n := 2048
		switch {
		case strings.HasSuffix(r.PathValue("file"), ".png"):
			n = 300 << 10
			if shadow {
				n = 280 << 10 // re-encoded by the new pipeline
			}
		case strings.HasSuffix(r.PathValue("file"), ".js"):
			n = 24 << 10
		}
		w.Header().Set("Cache-Control", "max-age=60")
		w.Write(bytes.Repeat([]byte{'x'}, n))
	})
	mux.HandleFunc("GET /api/items/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, _ := strconv.Atoi(r.PathValue("id"))
		if shadow && id%7 == 0 {
			http.Error(w, `{"error":"item serializer crashed"}`, http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"id": id, "name": fmt.Sprintf("item %d", id), "price": id * 3})
	})
	mux.HandleFunc("GET /search", func(w http.ResponseWriter, r *http.Request) {
		if shadow {
			http.NotFound(w, r) // moved to /api/search in the new stack
			return
		}
		w.Header().Set("Content-Type", "text/html")
		w.Write(page("search " + r.URL.Query().Get("q")))
	})
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if shadow {
			// The shadow must never see this: POST is not replayed by default.
			panic("login replayed to the shadow")
		}
		http.SetCookie(w, &http.Cookie{Name: "session", Value: "s3cr3t"})
		http.Redirect(w, r, "/", http.StatusSeeOther)
	})
	mux.HandleFunc("GET /report.csv", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/csv")
		for i := 0; i < 20000; i++ {
			fmt.Fprintf(w, "%d,item %d,%d\n", i, i, i*3)
		}
	})
	return mux
}
