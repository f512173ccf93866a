package web

import "testing"

// A change wakes every stream holding the channel and gives later ones a
// fresh one; with no stream holding it a change costs nothing, and the
// channel the next stream takes is still open (it reads the state after
// taking it, so it sees that change anyway).
func TestChangedWakesOnlyHolders(t *testing.T) {
	s := &Server{changed: make(chan struct{})}
	closed := func(c <-chan struct{}) bool {
		select {
		case <-c:
			return true
		default:
			return false
		}
	}
	s.Changed() // nobody holds it
	a := s.changedCh()
	if closed(a) {
		t.Fatal("a change with no stream waiting closed the next stream's channel")
	}
	b := s.changedCh()
	s.Changed()
	if !closed(a) || !closed(b) {
		t.Fatal("a change did not wake every stream holding the channel")
	}
	c := s.changedCh()
	if closed(c) {
		t.Fatal("a stream after the change got a closed channel")
	}
	s.Changed()
	s.Changed() // no stream has taken the new one yet
	if !closed(c) {
		t.Fatal("the second change did not wake the stream")
	}
	if d := s.changedCh(); closed(d) {
		t.Fatal("a change nobody waited for closed the next channel")
	}
}
