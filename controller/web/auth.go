package web

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/quarryfleet/quarry/controller/fleet"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

const (
	cookieName = "quarry_session"
	csrfHeader = "X-Quarry-CSRF"
	maxBody    = 16 << 10
)

// session is one signed-in browser. Sessions live in memory: a controller
// restart signs everyone out, which is the safe direction.
type session struct {
	Who     string
	Role    string
	CSRF    string
	Expires time.Time
	// TokenKey identifies the admin token signed in with (its hash, not
	// the token), checked on every request: revoking or expiring the
	// token ends the session at once.
	TokenKey string
}

type sessions struct {
	ttl time.Duration
	mu  sync.Mutex
	m   map[string]*session // by sha256 of the cookie value
}

func newSessions(ttl time.Duration) *sessions {
	return &sessions{ttl: ttl, m: map[string]*session{}}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b)
}

func sessionKey(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])
}

func (ss *sessions) create(who, role, tokenKey string, now time.Time) (id string, s *session) {
	id = randomHex(32)
	s = &session{Who: who, Role: role, CSRF: randomHex(16), Expires: now.Add(ss.ttl), TokenKey: tokenKey}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for k, old := range ss.m {
		if now.After(old.Expires) {
			delete(ss.m, k)
		}
	}
	ss.m[sessionKey(id)] = s
	return id, s
}

func (ss *sessions) get(id string, now time.Time) (*session, bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s, ok := ss.m[sessionKey(id)]
	if !ok || now.After(s.Expires) {
		return nil, false
	}
	return s, true
}

func (ss *sessions) drop(id string) {
	ss.mu.Lock()
	delete(ss.m, sessionKey(id))
	ss.mu.Unlock()
}

type sessionCtxKey struct{}

func sessionFrom(ctx context.Context) *session {
	s, _ := ctx.Value(sessionCtxKey{}).(*session)
	return s
}

// auth admits requests from a signed-in session whose role reaches min.
// State-changing requests must also carry the session's CSRF token in a
// header, which a cross-site form cannot set.
func (s *Server) auth(min string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie(cookieName)
		if err != nil {
			writeError(w, http.StatusUnauthorized, "sign in first")
			return
		}
		sess, ok := s.sessions.get(c.Value, s.fleet.Now())
		if !ok {
			writeError(w, http.StatusUnauthorized, "session expired; sign in again")
			return
		}
		if _, _, err := s.fleet.CheckAdminTokenKey(sess.TokenKey); err != nil {
			s.sessions.drop(c.Value)
			writeError(w, http.StatusUnauthorized, "the token you signed in with was revoked or has expired; sign in with a new one")
			return
		}
		if fleet.RoleRank(sess.Role) < fleet.RoleRank(min) {
			writeError(w, http.StatusForbidden, "this needs the "+min+" role; you are "+sess.Role)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			got := r.Header.Get(csrfHeader)
			if subtle.ConstantTimeCompare([]byte(got), []byte(sess.CSRF)) != 1 {
				writeError(w, http.StatusForbidden, "missing or wrong "+csrfHeader+" header")
				return
			}
		}
		h(w, r.WithContext(context.WithValue(r.Context(), sessionCtxKey{}, sess)))
	})
}

type sessionView struct {
	Who  string `json:"who"`
	Role string `json:"role"`
	CSRF string `json:"csrf"`
	// CanAct says whether the action buttons apply to this user.
	CanAct bool `json:"can_act"`
}

func viewOf(sess *session) sessionView {
	return sessionView{Who: sess.Who, Role: sess.Role, CSRF: sess.CSRF, CanAct: fleet.RoleRank(sess.Role) >= fleet.RoleRank(fleet.RoleOperator)}
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Token string `json:"token"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "body must be JSON {\"token\": \"...\"}")
		return
	}
	src := sourceAddr(r)
	if wait := s.limiter.blocked(src, s.fleet.Now()); wait > 0 {
		s.audit("", "", "web login", "", "refused: too many failed sign-ins", "from "+r.RemoteAddr)
		w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
		writeError(w, http.StatusTooManyRequests, "too many failed sign-ins from your address; wait a minute")
		return
	}
	tok := strings.TrimSpace(req.Token)
	who, role, ok := s.fleet.LookupAdminToken(tok)
	if !ok {
		s.limiter.fail(src, s.fleet.Now())
		s.audit("", "", "web login", "", "error: unknown token", "from "+r.RemoteAddr)
		writeError(w, http.StatusUnauthorized, "that token is not an admin token of this controller")
		return
	}
	id, sess := s.sessions.create(who, role, fleet.AdminTokenKey(tok), s.fleet.Now())
	http.SetCookie(w, &http.Cookie{
		Name:     cookieName,
		Value:    id,
		Path:     "/",
		HttpOnly: true,
		Secure:   s.opts.SecureCookie,
		SameSite: http.SameSiteStrictMode,
		MaxAge:   int(s.opts.SessionTTL / time.Second),
	})
	s.audit(who, role, "web login", "", "ok", "from "+r.RemoteAddr)
	writeJSON(w, viewOf(sess))
}

// loginLimiter counts failed sign-ins per source address over a sliding
// window, so that tokens cannot be guessed at network speed.
type loginLimiter struct {
	max    int
	window time.Duration
	mu     sync.Mutex
	fails  map[string][]time.Time
}

// recent drops failures older than the window; call with mu held.
func (l *loginLimiter) recent(src string, now time.Time) []time.Time {
	f := l.fails[src]
	i := 0
	for i < len(f) && now.Sub(f[i]) >= l.window {
		i++
	}
	f = f[i:]
	if len(f) == 0 {
		delete(l.fails, src)
	} else {
		l.fails[src] = f
	}
	return f
}

// blocked says how long src must wait, 0 when it may try.
func (l *loginLimiter) blocked(src string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.recent(src, now)
	if len(f) < l.max {
		return 0
	}
	return l.window - now.Sub(f[0])
}

func (l *loginLimiter) fail(src string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.fails) > 10000 { // bound memory under a spread-out attack
		for k := range l.fails {
			l.recent(k, now)
		}
	}
	l.fails[src] = append(l.recent(src, now), now)
}

// sourceAddr is the client's IP address without its port.
func sourceAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(cookieName); err == nil {
		s.sessions.drop(c.Value)
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/", HttpOnly: true, Secure: s.opts.SecureCookie, SameSite: http.SameSiteStrictMode, MaxAge: -1})
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) session(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, viewOf(sessionFrom(r.Context())))
}

func (s *Server) audit(who, role, action, target, result, detail string) {
	if err := s.fleet.Audit(&quarryv1.AuditEntry{Who: who, Role: role, Action: action, Target: target, Result: result, Detail: detail}); err != nil {
		s.log.Error("audit write failed", "action", action, "err", err)
	}
}

func writeJSON(w http.ResponseWriter, v any) { writeJSONStatus(w, http.StatusOK, v) }

func writeJSONStatus(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
