package ctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// jobCmd is 'quarryctl job': self-healing build jobs.
func (a *App) jobCmd() *cobra.Command {
	job := &cobra.Command{Use: "job", Aliases: []string{"jobs"}, Short: "Run and inspect self-healing build jobs"}
	job.AddCommand(a.jobRunCmd(), a.jobListCmd(), a.jobShowCmd(), a.jobLogsCmd(), a.jobCancelCmd(), a.jobRevertCmd())
	return job
}

func (a *App) jobRunCmd() *cobra.Command {
	var file string
	var follow bool
	cmd := &cobra.Command{
		Use:   "run -f SPEC.yaml",
		Short: "Start a build job from a YAML spec (where: controller or agent:<selector>)",
		Long: "Start a build job. The spec names build and test steps, the rule packs that may heal\n" +
			"it and where it runs: 'controller', or 'agent:<selector>' such as 'agent:name=rig-*',\n" +
			"'agent:tag=site=reykjavik' or 'agent:rig-07' (one rig by name or id). With --follow,\n" +
			"progress is printed until the job ends and the exit status is non-zero unless every\n" +
			"run passed.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return errors.New("-f SPEC.yaml is required ('-' reads standard input)")
			}
			spec, err := readJobSpec(file, cmd.InOrStdin())
			if err != nil {
				return err
			}
			resp, err := fetch(a, cmd.Context(), quarryv1.NewJobServiceClient, quarryv1.JobServiceClient.RunJob, &quarryv1.RunJobRequest{SpecYaml: spec})
			if err != nil {
				return err
			}
			j := resp.Job
			if !follow {
				return a.renderDone(j, "job %s started (%s, %d run(s)); follow with 'quarryctl job show %s'", j.Id, j.Where, len(j.Runs), j.Id)
			}
			if a.Opts.Output != "json" {
				fmt.Fprintf(a.Out, "job %s started (%s, %d run(s))\n", j.Id, j.Where, len(j.Runs))
			}
			return a.followJob(cmd.Context(), j.Id)
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "job spec YAML file, or - for standard input")
	cmd.Flags().BoolVar(&follow, "follow", false, "print progress until the job ends")
	return cmd
}

func readJobSpec(file string, stdin io.Reader) ([]byte, error) {
	if file == "-" {
		b, err := io.ReadAll(io.LimitReader(stdin, 1<<20))
		if err != nil {
			return nil, fmt.Errorf("read spec from standard input: %w", err)
		}
		return b, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read spec: %w", err)
	}
	return b, nil
}

// followJob streams progress with no deadline (builds take minutes), then
// prints the finished job. It fails unless every run passed.
func (a *App) followJob(ctx context.Context, id string) error {
	err := a.Opts.withController(ctx, 0, func(ctx context.Context, conn grpc.ClientConnInterface) error {
		stream, err := quarryv1.NewJobServiceClient(conn).WatchJob(ctx, &quarryv1.WatchJobRequest{JobId: id})
		if err != nil {
			return err
		}
		printed := false
		for {
			resp, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil && printed {
				// Events are already on screen: starting over elsewhere
				// would print them twice.
				return noFailover(err)
			}
			if err != nil {
				return err
			}
			printed = true
			if a.Opts.Output != "json" {
				fmt.Fprintln(a.Out, formatJobEvent(resp.Event))
			}
		}
	})
	if err != nil {
		return err
	}
	resp, err := fetch(a, ctx, quarryv1.NewJobServiceClient, quarryv1.JobServiceClient.GetJob, &quarryv1.GetJobRequest{JobId: id})
	if err != nil {
		return err
	}
	j := resp.Job
	if a.Opts.Output == "json" {
		if err := a.json(j); err != nil {
			return err
		}
	}
	switch j.Status {
	case "succeeded", "healed":
		return nil
	case "pending", "running":
		return fmt.Errorf("job %s is still %s", j.Id, j.Status)
	}
	return fmt.Errorf("job %s %s: %s", j.Id, j.Status, j.Diagnosis)
}

func formatJobEvent(e *quarryv1.JobEvent) string {
	prefix := ""
	if e.Target != "" && e.Target != "controller" {
		prefix = "[" + e.Target + "] "
	}
	switch e.Kind {
	case "output":
		return prefix + "  " + e.Text
	case "step-start":
		if e.Step == "" {
			return prefix + e.Text
		}
		return fmt.Sprintf("%sattempt %d %s: $ %s", prefix, e.Attempt, e.Text, e.Step)
	case "step-end":
		return prefix + "  -> " + strings.TrimSpace(e.Text)
	case "remediation":
		return prefix + "remediation: " + e.Text
	case "attempt":
		return prefix + e.Text
	case "done":
		return prefix + "run " + e.Text
	case "job-done":
		return "job " + e.Text
	}
	return prefix + e.Kind + ": " + e.Text
}

func (a *App) jobListCmd() *cobra.Command {
	var limit uint32
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List build jobs, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := fetch(a, cmd.Context(), quarryv1.NewJobServiceClient, quarryv1.JobServiceClient.ListJobs, &quarryv1.ListJobsRequest{Limit: limit})
			if err != nil {
				return err
			}
			now := time.Now()
			return a.renderTable(resp, []string{"JOB", "NAME", "WHERE", "STATUS", "RUNS", "ATTEMPTS", "STARTED", "BY"}, func(t *table) {
				for _, j := range resp.Jobs {
					var attempts int32
					for _, r := range j.Runs {
						attempts += r.Attempts
					}
					t.row(j.Id, j.Name, j.Where, j.Status, len(j.Runs), attempts, ago(j.StartedUnixNano, now), dash(j.CreatedBy))
				}
			})
		},
	}
	cmd.Flags().Uint32Var(&limit, "limit", 50, "most jobs to list")
	return cmd
}

func (a *App) jobShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show JOB",
		Short: "Show a job's runs and attempts: diagnostics, remediation, diff and output tail",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := fetch(a, cmd.Context(), quarryv1.NewJobServiceClient, quarryv1.JobServiceClient.GetJob, &quarryv1.GetJobRequest{JobId: args[0]})
			if err != nil {
				return err
			}
			return a.render(resp.Job, func() error {
				printJob(a.Out, resp.Job, time.Now())
				return nil
			})
		},
	}
}

// printJob writes a job for a person.
func printJob(w io.Writer, j *quarryv1.BuildJob, now time.Time) {
	fmt.Fprintf(w, "Job:       %s\nName:      %s\nWhere:     %s\nStatus:    %s\n", j.Id, j.Name, j.Where, j.Status)
	fmt.Fprintf(w, "Started:   %s by %s\n", ago(j.StartedUnixNano, now), dash(j.CreatedBy))
	if j.FinishedUnixNano != 0 {
		fmt.Fprintf(w, "Took:      %s\n", time.Duration(j.FinishedUnixNano-j.StartedUnixNano).Round(time.Millisecond))
	}
	if j.Diagnosis != "" {
		fmt.Fprintf(w, "Diagnosis: %s\n", j.Diagnosis)
	}
	for _, r := range j.Runs {
		fmt.Fprintf(w, "\nRun on %s", r.Target)
		if r.RigId != "" {
			fmt.Fprintf(w, " (%s, command %s)", r.RigId, dash(r.CommandId))
		}
		fmt.Fprintf(w, ": %s after %d attempt(s)\n", r.Status, r.Attempts)
		if r.Diagnosis != "" {
			fmt.Fprintf(w, "  Diagnosis: %s\n", r.Diagnosis)
		}
		if r.Error != "" {
			fmt.Fprintf(w, "  Error: %s\n", r.Error)
		}
		for _, at := range r.AttemptLog {
			fmt.Fprintf(w, "  Attempt %d: %s step %q exited %d (%s)\n", at.Number, at.Phase, at.Step, at.ExitCode, time.Duration(at.DurationMs)*time.Millisecond)
			n := 0
			for _, d := range at.Diagnostics {
				if d.Severity != "error" && d.Severity != "fatal" {
					continue
				}
				if n++; n > 5 {
					fmt.Fprintln(w, "    ...")
					break
				}
				fmt.Fprintf(w, "    %s\n", jobDiagString(d))
			}
			if rem := at.Remediation; rem != nil {
				fmt.Fprintf(w, "    Remediation %s (%s): %s\n", rem.Rule, rem.Action, rem.Description)
				if rem.Diff != "" {
					fmt.Fprintln(w, jobIndent(strings.TrimRight(rem.Diff, "\n"), "      "))
				}
			}
			if at.OutputTail != "" {
				fmt.Fprintln(w, "    Output (tail):")
				fmt.Fprintln(w, jobIndent(jobTailLines(at.OutputTail, 15), "      "))
			}
		}
	}
}

func jobDiagString(d *quarryv1.JobDiagnostic) string {
	var b strings.Builder
	if d.File != "" {
		b.WriteString(d.File)
		if d.Line > 0 {
			fmt.Fprintf(&b, ":%d", d.Line)
		}
		b.WriteString(": ")
	}
	b.WriteString(d.Severity)
	if d.Code != "" {
		b.WriteString(" " + d.Code)
	}
	return b.String() + ": " + d.Message
}

func jobIndent(s, pad string) string {
	return pad + strings.ReplaceAll(s, "\n", "\n"+pad)
}

func jobTailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (a *App) jobLogsCmd() *cobra.Command {
	var maxBytes uint32
	cmd := &cobra.Command{
		Use:   "logs JOB",
		Short: "Print a job's build output",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := fetch(a, cmd.Context(), quarryv1.NewJobServiceClient, quarryv1.JobServiceClient.JobLogs, &quarryv1.JobLogsRequest{JobId: args[0], MaxBytes: maxBytes})
			if err != nil {
				return err
			}
			return a.render(resp, func() error {
				if resp.Truncated {
					fmt.Fprintln(a.Out, "[... earlier output left out; raise --max-bytes ...]")
				}
				fmt.Fprint(a.Out, resp.Text)
				return nil
			})
		},
	}
	cmd.Flags().Uint32Var(&maxBytes, "max-bytes", 1<<20, "print at most the last this many bytes")
	return cmd
}

func (a *App) jobCancelCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "cancel JOB",
		Short: "Stop a running job",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := fetch(a, cmd.Context(), quarryv1.NewJobServiceClient, quarryv1.JobServiceClient.CancelJob, &quarryv1.CancelJobRequest{JobId: args[0]})
			if err != nil {
				return err
			}
			return a.render(resp.Job, func() error {
				fmt.Fprintf(a.Out, "job %s %s\n", resp.Job.Id, resp.Job.Status)
				for _, r := range resp.Job.Runs {
					if r.Error != "" {
						fmt.Fprintf(a.Out, "  %s: %s\n", r.Target, r.Error)
					}
				}
				return nil
			})
		},
	}
}

func (a *App) jobRevertCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "revert JOB",
		Short: "Undo every file edit a finished job made",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := fetch(a, cmd.Context(), quarryv1.NewJobServiceClient, quarryv1.JobServiceClient.RevertJob, &quarryv1.RevertJobRequest{JobId: args[0]})
			if err != nil {
				return err
			}
			return a.render(resp, func() error { return a.printRevert(resp) })
		},
	}
}

// printRevert writes each run's revert; it fails when any run could not
// be reverted.
func (a *App) printRevert(resp *quarryv1.RevertJobResponse) error {
	var failed int
	for _, r := range resp.Runs {
		switch {
		case r.Error != "":
			failed++
			fmt.Fprintf(a.Out, "%s: %s\n", r.Target, r.Error)
		case r.Pending:
			fmt.Fprintf(a.Out, "%s: revert queued as command %s; the rig has not answered yet\n", r.Target, r.CommandId)
		default:
			fmt.Fprintf(a.Out, "%s: restored %d file(s)\n", r.Target, len(r.Restored))
			for _, p := range r.Restored {
				fmt.Fprintln(a.Out, "  "+p)
			}
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d run(s) could not be reverted", failed)
	}
	return nil
}
