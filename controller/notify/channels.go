package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/smtp"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Message is what a channel delivers: an alert firing or resolving, or a
// test. Its JSON form is the webhook body.
type Message struct {
	ID       string    `json:"id"`
	Kind     string    `json:"kind"` // firing, resolved or test
	Key      string    `json:"key,omitempty"`
	Rule     string    `json:"rule,omitempty"`
	RigID    string    `json:"rig_id,omitempty"`
	RigName  string    `json:"rig_name,omitempty"`
	Subject  string    `json:"subject,omitempty"`
	Severity string    `json:"severity,omitempty"`
	Text     string    `json:"text"`
	Since    time.Time `json:"since,omitzero"`
	Resolved time.Time `json:"resolved_at,omitzero"`
	// Batch holds the messages a batch carries (kind "batch").
	Batch []Message `json:"batch,omitempty"`
}

// Message kinds.
const (
	KindFiring   = "firing"
	KindResolved = "resolved"
	KindTest     = "test"
	KindBatch    = "batch"
)

// Headline is the message in one line: the mail subject.
func (m Message) Headline() string {
	s := "[quarry] " + strings.ToUpper(m.Kind)
	if m.Severity != "" {
		s += " " + m.Severity
	}
	s += ": "
	if m.RigName != "" {
		s += m.RigName + " "
	}
	return s + m.Text
}

// channel delivers messages somewhere.
type channel interface {
	// Name says where, without anything secret: the webhook's scheme and
	// host, the relay's address.
	Name() string
	Send(ctx context.Context, m Message) error
}

// Webhook delivery limits.
const (
	webhookTimeout = 10 * time.Second
	maxWebhookBody = 256 << 10 // a batch of 100 messages fits
	maxRedirects   = 3
	// Header names receivers check.
	SignatureHeader = "X-Quarry-Signature"
	TimestampHeader = "X-Quarry-Timestamp"
	MessageIDHeader = "X-Quarry-Message-Id"
)

// Sign is the webhook signature of body sent at timestamp ts (unix
// seconds, as sent in TimestampHeader): "sha256=" and the hex HMAC-SHA256
// of "ts.body" under the secret. Receivers recompute it to check a message
// came from this controller and was not replayed from long ago.
func Sign(secret []byte, ts string, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(ts))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

type webhook struct {
	name   string
	u      *url.URL
	secret []byte
	client *http.Client
	now    func() time.Time
}

func newWebhook(i int, w Webhook, now func() time.Time) (*webhook, error) {
	u, err := parseWebhookURL(w.URL)
	if err != nil {
		return nil, fmt.Errorf("notify.webhooks[%d].url: %w", i, err)
	}
	secret, err := readSecret(fmt.Sprintf("webhooks[%d].secret_file", i), w.SecretFile, minSecret)
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // a proxy from the environment would see every alert
	h := &webhook{name: "webhook " + u.Scheme + "://" + u.Host, u: u, secret: secret, now: now}
	h.client = &http.Client{Timeout: webhookTimeout, Transport: tr, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		first := via[0].URL
		switch {
		case len(via) >= maxRedirects:
			return errors.New("too many redirects")
		case req.URL.Host != first.Host:
			return fmt.Errorf("redirect to another host (%s) refused", req.URL.Hostname())
		case first.Scheme == "https" && req.URL.Scheme != "https":
			return errors.New("redirect from https to http refused")
		}
		return nil
	}}
	return h, nil
}

func (h *webhook) Name() string { return h.name }

func (h *webhook) Send(ctx context.Context, m Message) error {
	body, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if len(body) > maxWebhookBody {
		return fmt.Errorf("message of %d bytes exceeds the %d-byte webhook limit", len(body), maxWebhookBody)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.u.String(), bytes.NewReader(body))
	if err != nil {
		return errors.New("cannot build the request")
	}
	ts := strconv.FormatInt(h.now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "quarry-controller")
	req.Header.Set(TimestampHeader, ts)
	req.Header.Set(SignatureHeader, Sign(h.secret, ts, body))
	req.Header.Set(MessageIDHeader, m.ID)
	resp, err := h.client.Do(req)
	if err != nil {
		// url.Error repeats the whole URL, whose path may be a token
		// (chat services put one there).
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("post: %s", clean(err.Error(), 300))
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("receiver answered HTTP %d", resp.StatusCode)
	}
	return nil
}

// smtpTimeout bounds one whole mail delivery; below the dashboard's
// 30 s write timeout, so its test button gets an answer.
const smtpTimeout = 20 * time.Second

type mailer struct {
	cfg      SMTP
	host     string
	password string
	startTLS bool
	roots    *x509.CertPool
	now      func() time.Time
}

func newMailer(s SMTP, roots *x509.CertPool, now func() time.Time) (*mailer, error) {
	host, _, err := net.SplitHostPort(s.Addr)
	if err != nil {
		return nil, fmt.Errorf("notify.smtp.addr: %w", err)
	}
	m := &mailer{cfg: s, host: host, startTLS: s.StartTLS, roots: roots, now: now}
	if s.PasswordFile != "" {
		b, err := readSecret("smtp.password_file", s.PasswordFile, 1)
		if err != nil {
			return nil, err
		}
		m.password = string(b)
	}
	return m, nil
}

func (m *mailer) Name() string { return "smtp " + m.cfg.Addr }

func (m *mailer) Send(ctx context.Context, msg Message) error {
	ctx, cancel := context.WithTimeout(ctx, smtpTimeout)
	defer cancel()
	d := net.Dialer{}
	conn, err := d.DialContext(ctx, "tcp", m.cfg.Addr)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	dl, _ := ctx.Deadline()
	_ = conn.SetDeadline(dl)
	// Closing the connection when ctx ends unblocks any exchange.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	c, err := smtp.NewClient(conn, m.host)
	if err != nil {
		conn.Close()
		return fmt.Errorf("greeting: %w", err)
	}
	defer c.Close()
	if err := c.Hello("quarry-controller"); err != nil {
		return fmt.Errorf("EHLO: %w", err)
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		if err := c.StartTLS(&tls.Config{ServerName: m.host, RootCAs: m.roots, MinVersion: tls.VersionTLS12}); err != nil {
			return fmt.Errorf("STARTTLS: %w", err)
		}
	} else if m.startTLS {
		return errors.New("the server does not offer STARTTLS (set smtp.starttls: false only for a relay on loopback)")
	}
	if m.cfg.Username != "" {
		// PlainAuth itself refuses to send the password without TLS
		// unless the server is on loopback.
		if err := c.Auth(smtp.PlainAuth("", m.cfg.Username, m.password, m.host)); err != nil {
			return fmt.Errorf("AUTH: %w", err)
		}
	}
	if err := c.Mail(m.cfg.From); err != nil {
		return fmt.Errorf("MAIL FROM: %w", err)
	}
	for _, to := range m.cfg.To {
		if err := c.Rcpt(to); err != nil {
			return fmt.Errorf("RCPT TO %s: %w", to, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if _, err := w.Write(m.compose(msg)); err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	return c.Quit()
}

// compose writes the mail. Every header value is cleaned of line breaks
// (a rig's text must not add headers) and the subject is encoded for
// non-ASCII text.
func (m *mailer) compose(msg Message) []byte {
	var b strings.Builder
	hdr := func(k, v string) { b.WriteString(k + ": " + clean(v, 998-len(k)) + "\r\n") }
	hdr("From", m.cfg.From)
	hdr("To", strings.Join(m.cfg.To, ", "))
	// Cut before encoding, so the encoded header stays within a line.
	hdr("Subject", mime.QEncoding.Encode("utf-8", clean(msg.Headline(), 200)))
	hdr("Date", m.now().Format(time.RFC1123Z))
	hdr("Message-ID", "<"+msg.ID+"@quarry>")
	hdr("MIME-Version", "1.0")
	hdr("Content-Type", "text/plain; charset=utf-8")
	hdr("Content-Transfer-Encoding", "8bit")
	b.WriteString("\r\n")
	line := func(k, v string) {
		if v != "" {
			b.WriteString(k + ": " + v + "\r\n")
		}
	}
	line("Alert", msg.Text)
	line("State", msg.Kind)
	line("Severity", msg.Severity)
	line("Rig", strings.TrimSpace(msg.RigName+" "+msg.RigID))
	line("Rule", msg.Rule)
	line("Subject", msg.Subject)
	if !msg.Since.IsZero() {
		line("Since", msg.Since.UTC().Format(time.RFC3339))
	}
	if !msg.Resolved.IsZero() {
		line("Resolved", msg.Resolved.UTC().Format(time.RFC3339))
	}
	line("Key", msg.Key)
	line("Message-ID", msg.ID)
	for _, m := range msg.Batch {
		b.WriteString("\r\n" + strings.ToUpper(m.Kind) + " " + m.Severity + ": " + strings.TrimSpace(m.RigName+" "+m.Text))
		if !m.Since.IsZero() {
			b.WriteString(" (since " + m.Since.UTC().Format(time.RFC3339) + ")")
		}
		b.WriteString("\r\n  key " + m.Key + ", id " + m.ID + "\r\n")
	}
	return []byte(b.String())
}
