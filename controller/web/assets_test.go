package web_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The dashboard's scripts build the page from DOM nodes and text, never
// from HTML strings, so nothing the server sends (rig names, reasons,
// errors) can become markup. Every page script is loaded by index.html
// and has the section it fills.
func TestPageScripts(t *testing.T) {
	index, err := os.ReadFile(filepath.Join("assets", "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	scripts, _ := filepath.Glob(filepath.Join("assets", "*.js"))
	pages, _ := filepath.Glob(filepath.Join("assets", "pages", "*.js"))
	if len(pages) == 0 {
		t.Fatal("no page scripts under assets/pages")
	}
	html := regexp.MustCompile(`\b(innerHTML|outerHTML|insertAdjacentHTML|document\.write)\b`)
	for _, f := range append(scripts, pages...) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if m := html.Find(b); m != nil {
			t.Errorf("%s uses %s; build nodes with el() and textContent", f, m)
		}
	}
	for _, f := range pages {
		name := strings.TrimSuffix(filepath.Base(f), ".js")
		if !strings.Contains(string(index), `src="/static/pages/`+name+`.js"`) {
			t.Errorf("index.html does not load pages/%s.js", name)
		}
		if !strings.Contains(string(index), `<section id="page-`+name+`" hidden>`) {
			t.Errorf("index.html has no hidden section page-%s", name)
		}
	}
}
