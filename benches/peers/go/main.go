// Command ssegate-peer-go is a benchmark peer for ssegate: the SSE hub that the Go literature
// describes, standard library only. One goroutine per subscriber (net/http's, per connection),
// a buffered channel per subscriber, a mutex-guarded map of topics, and http.Flusher after
// every event. A publish appends to the topic's history and offers the encoded event to each
// subscriber's channel without blocking; a subscriber whose channel is full is dropped (it
// would reconnect), as the common "broker" examples do.
//
// It speaks the subset of Mercure that ssegate-load uses:
//
//	GET  /.well-known/mercure?topic=T     text/event-stream, ":\n" once registered
//	POST /.well-known/mercure             form: topic=T&data=D  → 200, the event id
//
// Publisher JWTs are not checked (ssegate checks one per publish: a cost the peer skips).
// It prints "ssegate-peer-go listening on ADDR" once it accepts connections.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"strconv"
	"sync"
)

// subscriber is one open stream; its channel is the only thing a publisher touches.
type subscriber struct {
	ch chan []byte
}

// topic holds the subscribers and a small history (the last historySize events).
type topic struct {
	subs    map[*subscriber]struct{}
	history [][]byte
}

type hub struct {
	mu          sync.Mutex
	topics      map[string]*topic
	nextID      uint64
	historySize int
	bufferSize  int
}

func (h *hub) topicLocked(name string) *topic {
	t, ok := h.topics[name]
	if !ok {
		t = &topic{subs: make(map[*subscriber]struct{})}
		h.topics[name] = t
	}
	return t
}

func (h *hub) publish(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	name := r.PostForm.Get("topic")
	if name == "" {
		http.Error(w, "missing topic", http.StatusBadRequest)
		return
	}
	data := r.PostForm.Get("data")

	h.mu.Lock()
	h.nextID++
	id := strconv.FormatUint(h.nextID, 10)
	frame := []byte("id: " + id + "\ndata: " + data + "\n\n")
	t := h.topicLocked(name)
	t.history = append(t.history, frame)
	if len(t.history) > h.historySize {
		t.history = t.history[len(t.history)-h.historySize:]
	}
	for s := range t.subs {
		select {
		case s.ch <- frame:
		default:
			// Too slow: drop it rather than block the publisher and every other subscriber.
			delete(t.subs, s)
			close(s.ch)
		}
	}
	h.mu.Unlock()

	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write([]byte(id))
}

func (h *hub) subscribe(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("topic")
	if name == "" {
		http.Error(w, "missing topic", http.StatusBadRequest)
		return
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	s := &subscriber{ch: make(chan []byte, h.bufferSize)}
	h.mu.Lock()
	t := h.topicLocked(name)
	t.subs[s] = struct{}{}
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		if _, ok := t.subs[s]; ok {
			delete(t.subs, s)
		}
		h.mu.Unlock()
	}()

	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-cache")
	hd.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	// Registered: the opening comment tells the client so.
	if _, err := w.Write([]byte(":\n")); err != nil {
		return
	}
	flusher.Flush()

	done := r.Context().Done()
	for {
		select {
		case frame, open := <-s.ch:
			if !open {
				return // dropped as too slow
			}
			if _, err := w.Write(frame); err != nil {
				return
			}
			flusher.Flush()
		case <-done:
			return
		}
	}
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	history := flag.Int("history", 100, "events kept per topic")
	buffer := flag.Int("buffer", 1024, "events buffered per subscriber before it is dropped")
	flag.Parse()

	h := &hub{topics: make(map[string]*topic), historySize: *history, bufferSize: *buffer}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/mercure", func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet:
			h.subscribe(w, r)
		case http.MethodPost:
			h.publish(w, r)
		default:
			w.Header().Set("Allow", "GET, POST")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		}
	})

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("listen %s: %v", *listen, err)
	}
	fmt.Printf("ssegate-peer-go listening on %s\n", ln.Addr())
	log.Fatal(http.Serve(ln, mux))
}
