package verdicts

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// Path is where the agent serves the record stream.
const Path = "/verdicts"

// ContentType is the stream's media type: JSON objects, one a line.
const ContentType = "application/x-ndjson"

// streamWriteTimeout bounds one write to a stream client: one that stops
// reading for that long is disconnected rather than held for ever.
const streamWriteTimeout = 10 * time.Second

// Message is one line of the stream: a Record, or, with Lost set and no
// record fields, a notice that this stream fell behind and missed that many
// records.
type Message struct {
	Record
	Lost uint64 `json:"lost,omitempty"`
}

// DefaultMaxStreams is how many record streams an agent serves at once
// unless told otherwise (policyd run --max-verdict-streams): a few people
// observing one node, with room to spare.
const DefaultMaxStreams = 16

// Streams serves the record stream to at most a fixed number of clients at
// once; a request beyond that is answered 429 Too Many Requests. What one
// stream holds is bounded too: at most subscriptionBuffer records waiting
// (a client that falls further behind misses records, and is told how
// many), the backlog it asked for (at most RecentRecords), and a client
// that reads nothing for streamWriteTimeout is disconnected. So an agent
// never holds more than about Max × (subscriptionBuffer + RecentRecords)
// records for its streams, however many processes on the node connect.
type Streams struct {
	r       *Resolver
	max     int64
	open    atomic.Int64
	refused atomic.Uint64
}

// Streams returns a handler for r's stream serving at most max clients at
// once (DefaultMaxStreams when max is 0 or less).
func (r *Resolver) Streams(max int) *Streams {
	if max <= 0 {
		max = DefaultMaxStreams
	}
	return &Streams{r: r, max: int64(max)}
}

// Handler returns r.Streams(DefaultMaxStreams).
func (r *Resolver) Handler() http.Handler { return r.Streams(DefaultMaxStreams) }

// Open is how many streams are being served.
func (s *Streams) Open() int { return int(s.open.Load()) }

// Refused is how many stream requests were answered 429.
func (s *Streams) Refused() uint64 { return s.refused.Load() }

// Max is the cap.
func (s *Streams) Max() int { return int(s.max) }

// ServeHTTP serves the record stream. GET with the query of Filter.Values
// answers 200 and then one JSON object a line (Message): the recent records
// asked for by since, then live records as they are made, until the client
// goes away. A bad query is 400, a request beyond the cap 429. It replaces
// the server's write timeout for the stream by a bound on each write.
func (s *Streams) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, "GET only", http.StatusMethodNotAllowed)
		return
	}
	f, err := ParseFilter(req.URL.Query())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if s.open.Add(1) > s.max {
		s.open.Add(-1)
		s.refused.Add(1)
		w.Header().Set("Retry-After", "10")
		http.Error(w, fmt.Sprintf("too many verdict streams: the agent serves %d at once (--max-verdict-streams)", s.max), http.StatusTooManyRequests)
		return
	}
	defer s.open.Add(-1)
	s.r.serveStream(w, req, f)
}

// serveStream writes the stream of records f selects until the client goes
// away or stops reading.
func (r *Resolver) serveStream(w http.ResponseWriter, req *http.Request, f Filter) {
	// net/http clears the read deadline once the request is read; the
	// server's WriteTimeout would end the stream, so each write gets a
	// deadline of its own instead.
	rc := http.NewResponseController(w)
	sub := r.SubscribeSince(r.now().Add(-f.Since), f.Since > 0)
	defer sub.Close()
	w.Header().Set("Content-Type", ContentType)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	write := func(v any) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
		return enc.Encode(v) == nil
	}
	flush := func() bool {
		_ = rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
		return rc.Flush() == nil
	}
	for i := range sub.Backlog {
		if f.Match(&sub.Backlog[i]) && !write(&sub.Backlog[i]) {
			return
		}
	}
	if !flush() {
		return
	}
	var lost uint64
	for {
		select {
		case <-req.Context().Done():
			return
		case rec := <-sub.Records():
			if d := sub.Dropped(); d > lost {
				if !write(Message{Lost: d - lost}) {
					return
				}
				lost = d
			}
			if f.Match(&rec) && !write(&rec) {
				return
			}
			// Write what else is waiting, then flush once.
			for more := true; more; {
				select {
				case rec := <-sub.Records():
					if f.Match(&rec) && !write(&rec) {
						return
					}
				default:
					more = false
				}
			}
			if !flush() {
				return
			}
		}
	}
}

// StatusError is a stream request the agent refused.
type StatusError struct {
	Code int
	// Message is the agent's explanation (the response body).
	Message string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("agent answered %d %s: %s", e.Code, http.StatusText(e.Code), e.Message)
}

// Follow asks the stream at url (http://HOST:PORT/verdicts) for the
// records f selects, with token as a bearer token when it is not empty,
// and calls fn with each message until ctx ends (then it returns nil), the
// agent ends the stream or fn returns an error.
func Follow(ctx context.Context, c *http.Client, url, token string, f Filter, fn func(Message) error) error {
	if err := f.Validate(); err != nil {
		return err
	}
	if q := f.Values().Encode(); q != "" {
		url += "?" + q
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", ContentType)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return &StatusError{Code: resp.StatusCode, Message: strings.TrimSpace(string(body))}
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 4<<10), 1<<20)
	for sc.Scan() {
		var m Message
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			return fmt.Errorf("agent sent a line that is not a record: %w", err)
		}
		if err := fn(m); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading the stream: %w", err)
	}
	return errors.New("the agent ended the stream (it stopped or restarted)")
}
