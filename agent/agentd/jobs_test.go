package agentd

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/quarryfleet/quarry/agent/link"
	"github.com/quarryfleet/quarry/pkg/selfheal"
	"github.com/quarryfleet/quarry/pkg/testsupport"
)

func jobAgent(t *testing.T) *Agent {
	t.Helper()
	dir := t.TempDir()
	db := testsupport.OpenDB(t, filepath.Join(dir, DBFile), link.Buckets...)
	return &Agent{cfg: Config{DataDir: dir}, db: db, log: slog.New(slog.DiscardHandler)}
}

func TestRunJobCommand(t *testing.T) {
	a := jobAgent(t)
	project := t.TempDir()
	okSpec := selfheal.Spec{Name: "ok", Dir: project, Build: []selfheal.Step{{Shell: "echo built > out.txt"}}, Where: "agent:name=x"}
	failSpec := selfheal.Spec{Name: "broken", Dir: project, Build: []selfheal.Step{{Shell: "echo 'main.c:3:1: error: expected ;' >&2; exit 2"}}}
	cases := []struct {
		name       string
		payload    string
		wantErr    string
		wantStatus selfheal.Status
	}{
		{"not json", "{", "bad payload", ""},
		{"no job id", `{"op":"run"}`, "no job id", ""},
		{"unknown op", `{"op":"explode","job_id":"j1"}`, `unknown op "explode"`, ""},
		{"bad spec", `{"op":"run","job_id":"j2","spec":{"name":"x"}}`, "dir: is required", ""},
		{"passes", mustJSON(t, runJobPayload{Op: "run", JobID: "j3", Spec: okSpec}), "", selfheal.StatusSucceeded},
		{"fails", mustJSON(t, runJobPayload{Op: "run", JobID: "j4", Spec: failSpec}), "", selfheal.StatusFailed},
		{"revert unknown", `{"op":"revert","job_id":"nope"}`, "no backups", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := a.runJob(context.Background(), []byte(tc.payload))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var res selfheal.Result
			if err := json.Unmarshal(out, &res); err != nil {
				t.Fatalf("output is not a Result: %v\n%s", err, out)
			}
			if res.Status != tc.wantStatus || len(res.AttemptLog) == 0 {
				t.Errorf("status %s with %d attempts, want %s", res.Status, len(res.AttemptLog), tc.wantStatus)
			}
		})
	}
	if b, err := os.ReadFile(filepath.Join(project, "out.txt")); err != nil || string(b) != "built\n" {
		t.Errorf("the passing job did not run in its dir: %q %v", b, err)
	}
	rec, err := selfheal.NewBoltRecorder(a.db)
	if err != nil {
		t.Fatal(err)
	}
	if j, as, err := rec.Load(context.Background(), "j4"); err != nil || j.Status != selfheal.StatusFailed || len(as) != 1 {
		t.Errorf("agent's own record of j4: %s, %d attempts, %v", j.Status, len(as), err)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
