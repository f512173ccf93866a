package web

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

const keepAlive = 15 * time.Second

// stream sends the overview, with the page of the rig table that the
// query asks for as /api/overview takes it (and, with ?rig=ID, that rig's
// page), as Server-Sent Events whenever it changes: woken by committed reports,
// checked every PollInterval for changes no report announces (a rig going
// offline), and never more often than UpdateInterval.
func (s *Server) stream(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, "streaming unsupported")
		return
	}
	q, err := parseOverviewQuery(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	rigParam := r.URL.Query().Get("rig")
	var rigID string
	if rigParam != "" {
		id, err := s.fleet.Resolve(rigParam)
		if err != nil {
			writeError(w, http.StatusNotFound, err.Error())
			return
		}
		rigID = id
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(2 * keepAlive))
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, "retry: 2000\n\n")
	flusher.Flush()

	var lastOverview, lastRig []byte
	poll := time.NewTicker(s.opts.PollInterval)
	defer poll.Stop()
	lastWrite := time.Now()
	rc := http.NewResponseController(w)
	for {
		// The server's write timeout bounds ordinary responses; a live
		// stream gets a fresh deadline for each update instead, so a
		// client that stops reading is still dropped.
		_ = rc.SetWriteDeadline(time.Now().Add(2 * keepAlive))
		changed := s.changedCh() // before reading state, so no change is missed
		sent := false
		ov, err := json.Marshal(s.buildOverview(q))
		if err == nil && !bytes.Equal(ov, lastOverview) {
			writeEvent(w, "overview", ov)
			lastOverview, sent = ov, true
		}
		if rigID != "" {
			if rig, err := s.fleet.Rig(rigID); err == nil {
				rv, err := json.Marshal(s.buildRig(rig))
				if err == nil && !bytes.Equal(rv, lastRig) {
					writeEvent(w, "rig", rv)
					lastRig, sent = rv, true
				}
			}
		}
		if !sent && time.Since(lastWrite) >= keepAlive {
			fmt.Fprint(w, ": keep-alive\n\n")
			sent = true
		}
		if sent {
			flusher.Flush()
			lastWrite = time.Now()
		}
		select {
		case <-r.Context().Done():
			return
		case <-s.closed:
			return
		case <-changed:
		case <-poll.C:
		}
		// Coalesce bursts of reports into one update per interval.
		t := time.NewTimer(s.opts.UpdateInterval)
		select {
		case <-r.Context().Done():
			t.Stop()
			return
		case <-s.closed:
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func writeEvent(w http.ResponseWriter, name string, data []byte) {
	fmt.Fprintf(w, "event: %s\ndata: %s\n\n", name, data)
}
