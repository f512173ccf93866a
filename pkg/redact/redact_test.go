package redact

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestYAML(t *testing.T) {
	sheet := `name: xmr
miner:
  name: xmrig
  path: /opt/quarry/miners/xmrig
  api:
    port: 18080
    token: apitok-123
pools:
  - url: stratum+tcp://wallet.rig:poolpw-9@pool.example:3333
    user: 44AFFwallet.rig01
    password: hunter2
extra_args: ["--cpu-priority", "2", "-p", "flagpw-1", "--api-access-token=flagtok-2"]
`
	job := `name: build
env:
  GOFLAGS: -mod=mod
  DEPLOY_KEY: envsecret-3
steps: [make]
`
	cases := []struct {
		name      string
		doc       string
		whole     []string
		gone      []string
		kept      []string
		wantCount int
	}{
		{"flight sheet", sheet, nil, []string{"apitok-123", "poolpw-9", "hunter2", "flagpw-1", "flagtok-2"}, []string{"44AFFwallet.rig01", "/opt/quarry/miners/xmrig", "--cpu-priority", "18080", "pool.example:3333", "wallet.rig:"}, 5},
		{"job env", job, []string{"env"}, []string{"envsecret-3", "mod"}, []string{"GOFLAGS", "DEPLOY_KEY", "make"}, 2},
		{"env as a list", "env: [A=one-secret, B=two-secret]\n", []string{"env"}, []string{"one-secret", "two-secret"}, []string{"A=", "B="}, 2},
		{"not yaml", "a: [b\n", nil, []string{"a:"}, nil, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := string(YAML([]byte(c.doc), c.whole...))
			for _, s := range c.gone {
				if strings.Contains(got, s) {
					t.Errorf("%q survived:\n%s", s, got)
				}
			}
			for _, s := range c.kept {
				if !strings.Contains(got, s) {
					t.Errorf("%q lost:\n%s", s, got)
				}
			}
			if n := strings.Count(got, Mark); n != c.wantCount {
				t.Errorf("%d marks, want %d:\n%s", n, c.wantCount, got)
			}
		})
	}
}

func TestText(t *testing.T) {
	cases := []struct{ in, want string }{
		{"role viewer", "role viewer"},
		{"ttl 1h0m0s", "ttl 1h0m0s"},
		{"bearer qat1.0123abcd given", "bearer qat1.[redacted] given"},
		{"join qjt1.aa.bb.sha256:cc", "join qjt1.[redacted]"},
		{"key sk_live_abc123", "key sk_live_[redacted]"},
		{`password: "x1" and api_key=y2`, `password: "[redacted]" and api_key=[redacted]`},
		{"pool stratum+tcp://w.r:pw@host:1 down", "pool stratum+tcp://w.r:[redacted]@host:1 down"},
		{"pool stratum+tcp://w.r@host:1", "pool stratum+tcp://w.r@host:1"},
		{"", ""},
	}
	for _, c := range cases {
		if got := Text(c.in); got != c.want {
			t.Errorf("Text(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestSecretName(t *testing.T) {
	for name, want := range map[string]bool{
		"password": true, "--pass": true, "-p": true, "api_key": true, "Token": true, "STRIPE_SECRET": true,
		"user": false, "url": false, "sha256": false, "path": false, "--cpu-priority": false, "author": false,
	} {
		if got := SecretName(name); got != want {
			t.Errorf("SecretName(%q) = %v, want %v", name, got, want)
		}
	}
}

// textByEveryExpression is Text without its literal pre-checks: every
// expression on every input.
func textByEveryExpression(s string) string {
	if s == "" {
		return s
	}
	s = tokenRE.ReplaceAllString(s, "$1."+Mark)
	s = stripeRE.ReplaceAllString(s, "$1"+Mark)
	s = pairRE.ReplaceAllString(s, "$1$2"+Mark)
	return urlRE.ReplaceAllStringFunc(s, redactURL)
}

// FuzzTextPrechecks: skipping an expression whose literal is absent never
// changes what Text returns.
func FuzzTextPrechecks(f *testing.F) {
	for _, s := range []string{"role viewer", "bearer qat1.0123abcd given", "join qjt1.aa.bb.sha256:cc", "key sk_live_abc123", "rk_test_x whsec_y",
		`PASSWORD: "x1" and Api_Key=y2`, "pool stratum+tcp://w.r:pw@host:1 down", "x://a@b", "token=a qat1.b sk_c s://u:p@h", "SeCrEt=1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := Text(s), textByEveryExpression(s); got != want {
			t.Fatalf("Text(%q) = %q, every expression gives %q", s, got, want)
		}
	})
}

func BenchmarkTextWithoutSecrets(b *testing.B) {
	s := "queued 9f2c0a1b77e4d3c2 apply_flight_sheet erg to rig r10000-4711 (switch: etc to erg, +12.4%)" // no secret, as most audit text
	b.ReportAllocs()
	for b.Loop() {
		_ = Text(s)
	}
}

// foldForSecretWords maps only the long s and the Kelvin sign to ASCII
// letters; that is right only if no other character outside ASCII shares
// a case-folding orbit with an ASCII letter.
func TestOnlyTwoRunesFoldIntoASCII(t *testing.T) {
	for r := rune(utf8.RuneSelf); r <= unicode.MaxRune; r++ {
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			if f < utf8.RuneSelf && unicode.IsLetter(f) && r != '\u017F' && r != '\u212A' {
				t.Errorf("%U folds to %q", r, f)
			}
		}
	}
}

func TestSecretWordsFoundInAnyScript(t *testing.T) {
	for s, want := range map[string]bool{
		"erg pays 12 % more → switch": false,
		"données: rien à cacher":      false,
		"mot de passe: x":             true, // holds "pass": the check only says maybe
		"ſecret: x":                   true,
		"\u212Aey api\u212Aey=x":      true,
		"TOKEN → 1":                   true,
		"crédential":                  false,
		"Pässword=x":                  false,
		"\xffpassword=x":              true,
	} {
		if got := mayNameSecret(s); got != want {
			t.Errorf("mayNameSecret(%q) = %v, want %v", s, got, want)
		}
		if got, every := Text(s), textByEveryExpression(s); got != every {
			t.Errorf("Text(%q) = %q, every expression gives %q", s, got, every)
		}
	}
}

func BenchmarkTextNotASCII(b *testing.B) {
	s := "switch: erg pays 12.4 % more than etc → (r10000-4711, 6× RTX 3070)"
	b.ReportAllocs()
	for b.Loop() {
		_ = Text(s)
	}
}
