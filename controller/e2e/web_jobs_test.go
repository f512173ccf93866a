package e2e

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/quarryfleet/quarry/pkg/testsupport"
)

// An admin pastes a Go build job into the page; it runs on a real agent,
// heals its missing go.sum, and the page follows the attempts to the end
// and reverts the edit. Env values stay hidden from a viewer, who gets no
// run or revert controls, and an operator may not run jobs.
func TestJobsPageInBrowser(t *testing.T) {
	dir := t.TempDir()
	viewer := viewerToken(t, dir)
	grpcAddr, httpAddr := freePort(t), freePort(t)
	ctrl := startController(t, dir, grpcAddr, httpAddr)
	operator := adminToken(t, ctrl, "night-shift", "operator")
	rigDir := filepath.Join(dir, "rig")
	if err := os.MkdirAll(rigDir, 0o700); err != nil {
		t.Fatal(err)
	}
	startAgent(t, rigDir, grpcAddr, ctrl.newToken(t, "--rig-name", "builder-1"))
	eventually(t, "rig online", time.Minute, func() bool {
		r, ok := rigByName(t, ctrl.rigs(t), "builder-1")
		return ok && r.Online
	})
	project := filepath.Join(rigDir, "src", "sharecount")
	testsupport.CopyTree(t, testsupport.GoMissingSumProject(t), project)
	const secret = "pagesecret-4f1e9b"
	spec := testsupport.GoJobSpec(t, project, "agent:name=builder-*") + "  QUARRY_PAGE_TOKEN: " + secret + "\n"

	b := openBrowser(t, dir, httpAddr, 4*time.Minute)
	shots := screenshotDir(t)
	b.signIn(readAdminToken(t, dir), "local-admin · admin")
	b.do("bad spec",
		chromedp.Navigate(b.base+"#/jobs"),
		chromedp.WaitVisible(css("#job-form")),
		chromedp.SetValue(css("#job-spec"), "name: [unclosed"),
		click(`#job-form button[type="submit"]`),
		waitJS(`document.querySelector("#job-spec-error").textContent.length > 0`),
		waitJS(`location.hash === "#/jobs"`),
	)
	b.do("run",
		chromedp.SetValue(css("#job-spec"), spec),
		click(`#job-form button[type="submit"]`),
		waitJS(`location.hash.startsWith("#/jobs/")`),
		waitText("#job-runs", "Run on builder-1"),
	)
	// The page follows the job by itself until it ends.
	b.do("follow",
		chromedp.Poll[chromedp.Void](`!!document.querySelector('#job-title [data-status="healed"]')`, chromedp.WithPollingInterval(200*time.Millisecond), chromedp.WithPollingTimeout(3*time.Minute)),
		waitJS(`document.querySelectorAll('#job-runs li[data-attempt]').length === 2`),
		waitText(`#job-runs li[data-attempt="1"]`, "Remediation go/missing-go-sum"),
		waitText(`#job-runs li[data-attempt="2"]`, "[0 10 20]"),
		waitText("#job-logs", "missing go.sum entry"),
		waitText("#job-spec-view", secret), // an admin reads the spec as written
	)
	id := strings.TrimPrefix(evalIn[string](b, "job id", `decodeURIComponent(location.hash)`), "#/jobs/")
	b.do("revert",
		chromedp.WaitVisible(css("#job-revert")),
		click("#job-revert"),
		waitText("#job-result", "builder-1: restored 2 file(s)"),
	)
	if _, err := os.Stat(filepath.Join(project, "go.sum")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("go.sum still on the rig after the page's revert: %v", err)
	}
	out, err := ctrl.ctl(t, "audit", "--action", "job.", "--who", "local-admin")
	if err != nil || !strings.Contains(out, "job.run") || !strings.Contains(out, "job.revert") {
		t.Errorf("the page's run and revert are not audited: %v\n%s", err, out)
	}
	b.screenshots(shots, "dashboard-job", "#/jobs/"+id, waitText(`#job-runs li[data-attempt="2"]`, "[0 10 20]"))
	b.do("list", chromedp.Navigate(b.base+"#/jobs"), waitText(`#job-table tr[data-job="`+id+`"]`, "healed"))

	// A viewer follows the job but reads no env values and gets no
	// controls; an operator may cancel but not run or revert.
	b.signIn(viewer, "wall-screen · viewer")
	b.do("viewer", chromedp.Navigate(b.base+"#/jobs/"+id), waitText(`#job-runs li[data-attempt="2"]`, "[0 10 20]"), waitText("#job-spec-view", "QUARRY_PAGE_TOKEN"))
	if page := evalIn[string](b, "viewer page", `document.body.innerText`); strings.Contains(page, secret) {
		t.Error("a viewer sees the job's env value")
	}
	if n := evalIn[int](b, "controls", `document.querySelectorAll("#page-jobs button, #job-form").length`); n != 0 {
		t.Errorf("a viewer sees %d job controls", n)
	}
	for _, who := range []struct{ token, name string }{{viewer, "wall-screen · viewer"}, {operator, "night-shift · operator"}} {
		b.signIn(who.token, who.name)
		for method, body := range map[string]string{
			"JobService/RunJob":    `{"spec_yaml": "bmFtZTogeA=="}`,
			"JobService/RevertJob": `{"job_id": "` + id + `"}`,
		} {
			if got := b.rpcStatus(method, body); got != 403 {
				t.Errorf("%s calling %s: HTTP %d, want 403", who.name, method, got)
			}
		}
	}
	b.do("operator", chromedp.Navigate(b.base+"#/jobs"), waitText(`#job-table tr[data-job="`+id+`"]`, "healed"))
	if n := evalIn[int](b, "operator controls", `document.querySelectorAll("#job-form").length`); n != 0 {
		t.Error("an operator sees the run form")
	}
}
