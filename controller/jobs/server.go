package jobs

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/quarryfleet/quarry/controller/auth"
	"github.com/quarryfleet/quarry/controller/fleet"
	"github.com/quarryfleet/quarry/pkg/redact"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// JobRoles is the least role each JobService method needs. A job runs
// arbitrary commands (as root on rigs) and reverting one writes files there,
// so both need admin; stopping one is safe for operators; reading them
// changes nothing.
var JobRoles = map[string]string{
	quarryv1.JobService_RunJob_FullMethodName:    fleet.RoleAdmin,
	quarryv1.JobService_CancelJob_FullMethodName: fleet.RoleOperator,
	quarryv1.JobService_RevertJob_FullMethodName: fleet.RoleAdmin,
	quarryv1.JobService_ListJobs_FullMethodName:  fleet.RoleViewer,
	quarryv1.JobService_GetJob_FullMethodName:    fleet.RoleViewer,
	quarryv1.JobService_JobLogs_FullMethodName:   fleet.RoleViewer,
	quarryv1.JobService_WatchJob_FullMethodName:  fleet.RoleViewer,
}

// JobAudit is the audit action of each JobService method that acts.
var JobAudit = map[string]string{
	quarryv1.JobService_RunJob_FullMethodName:    "job.run",
	quarryv1.JobService_CancelJob_FullMethodName: "job.cancel",
	quarryv1.JobService_RevertJob_FullMethodName: "job.revert",
}

// JobServer is quarry.v1.JobService over a Manager.
type JobServer struct {
	quarryv1.UnimplementedJobServiceServer
	M *Manager
}

var _ quarryv1.JobServiceServer = (*JobServer)(nil)

// grpcErr maps the manager's errors to status codes.
func grpcErr(err error) error {
	return auth.StatusError(err, func(err error) (codes.Code, bool) {
		switch {
		case errors.Is(err, ErrNotFound):
			return codes.NotFound, true
		case errors.Is(err, ErrInvalid):
			return codes.InvalidArgument, true
		case errors.Is(err, ErrDenied):
			return codes.PermissionDenied, true
		case errors.Is(err, ErrNoRigs), errors.Is(err, ErrState), errors.Is(err, ErrDisabled):
			return codes.FailedPrecondition, true
		case errors.Is(err, ErrShutdown):
			return codes.Unavailable, true
		}
		return codes.OK, false
	})
}

func needID(id string) error {
	if id == "" {
		return status.Error(codes.InvalidArgument, "job_id is required")
	}
	return nil
}

// RunJob starts a job.
func (s *JobServer) RunJob(ctx context.Context, req *quarryv1.RunJobRequest) (*quarryv1.RunJobResponse, error) {
	if len(req.SpecYaml) == 0 {
		return nil, status.Error(codes.InvalidArgument, "spec_yaml is required")
	}
	id, err := s.M.Start(ctx, req.SpecYaml, auth.CallerFrom(ctx))
	if err != nil {
		return nil, grpcErr(err)
	}
	a := auth.Note(ctx)
	a.Target = id
	j, err := s.M.Job(ctx, id)
	if err != nil {
		return nil, grpcErr(err)
	}
	a.Detail = fmt.Sprintf("%s where=%s runs=%d", j.Name, j.Where, len(j.Runs))
	return &quarryv1.RunJobResponse{Job: j}, nil
}

// ListJobs lists jobs, newest first.
func (s *JobServer) ListJobs(ctx context.Context, req *quarryv1.ListJobsRequest) (*quarryv1.ListJobsResponse, error) {
	js, err := s.M.List(ctx, int(req.Limit))
	if err != nil {
		return nil, grpcErr(err)
	}
	for _, j := range js {
		redactJob(ctx, j)
	}
	return &quarryv1.ListJobsResponse{Jobs: js}, nil
}

// GetJob returns one job with its attempts.
func (s *JobServer) GetJob(ctx context.Context, req *quarryv1.GetJobRequest) (*quarryv1.GetJobResponse, error) {
	if err := needID(req.JobId); err != nil {
		return nil, err
	}
	j, err := s.M.Job(ctx, req.JobId)
	if err != nil {
		return nil, grpcErr(err)
	}
	redactJob(ctx, j)
	return &quarryv1.GetJobResponse{Job: j}, nil
}

// redactJob hides the spec's environment values, and any other
// credential in it, from a caller who may not read secrets.
func redactJob(ctx context.Context, j *quarryv1.BuildJob) {
	if !auth.SeesSecrets(ctx) {
		j.SpecYaml = string(redact.YAML([]byte(j.SpecYaml), "env"))
	}
}

// JobLogs returns the job's output.
func (s *JobServer) JobLogs(ctx context.Context, req *quarryv1.JobLogsRequest) (*quarryv1.JobLogsResponse, error) {
	if err := needID(req.JobId); err != nil {
		return nil, err
	}
	text, trunc, err := s.M.Logs(ctx, req.JobId, int(req.MaxBytes))
	if err != nil {
		return nil, grpcErr(err)
	}
	return &quarryv1.JobLogsResponse{Text: text, Truncated: trunc}, nil
}

// CancelJob stops a running job and returns it as it ended.
func (s *JobServer) CancelJob(ctx context.Context, req *quarryv1.CancelJobRequest) (*quarryv1.CancelJobResponse, error) {
	if err := needID(req.JobId); err != nil {
		return nil, err
	}
	a := auth.Note(ctx)
	a.Target = req.JobId
	if err := s.M.Cancel(ctx, req.JobId, auth.CallerFrom(ctx)); err != nil {
		return nil, grpcErr(err)
	}
	j, err := s.M.Job(ctx, req.JobId)
	if err != nil {
		return nil, grpcErr(err)
	}
	a.Detail = j.Name
	return &quarryv1.CancelJobResponse{Job: j}, nil
}

// RevertJob undoes a finished job's edits.
func (s *JobServer) RevertJob(ctx context.Context, req *quarryv1.RevertJobRequest) (*quarryv1.RevertJobResponse, error) {
	if err := needID(req.JobId); err != nil {
		return nil, err
	}
	auth.Note(ctx).Target = req.JobId
	runs, err := s.M.Revert(ctx, req.JobId, auth.CallerFrom(ctx))
	if err != nil {
		return nil, grpcErr(err)
	}
	return &quarryv1.RevertJobResponse{Runs: runs}, nil
}

// WatchJob streams progress until the job ends.
func (s *JobServer) WatchJob(req *quarryv1.WatchJobRequest, stream quarryv1.JobService_WatchJobServer) error {
	if err := needID(req.JobId); err != nil {
		return err
	}
	err := s.M.Watch(stream.Context(), req.JobId, func(e *quarryv1.JobEvent) error {
		return stream.Send(&quarryv1.WatchJobResponse{Event: e})
	})
	return grpcErr(err)
}
