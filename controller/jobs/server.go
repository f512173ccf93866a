package jobs

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/quarryfleet/quarry/controller/api"
	"github.com/quarryfleet/quarry/controller/fleet"
	"github.com/quarryfleet/quarry/pkg/redact"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// Roles is the least role each JobService method needs. A job runs
// arbitrary commands (as root on rigs) and reverting one writes files there,
// so both need admin; stopping one is safe for operators; reading them
// changes nothing.
var Roles = map[string]string{
	quarryv1.JobService_RunJob_FullMethodName:    fleet.RoleAdmin,
	quarryv1.JobService_CancelJob_FullMethodName: fleet.RoleOperator,
	quarryv1.JobService_RevertJob_FullMethodName: fleet.RoleAdmin,
	quarryv1.JobService_ListJobs_FullMethodName:  fleet.RoleViewer,
	quarryv1.JobService_GetJob_FullMethodName:    fleet.RoleViewer,
	quarryv1.JobService_JobLogs_FullMethodName:   fleet.RoleViewer,
	quarryv1.JobService_WatchJob_FullMethodName:  fleet.RoleViewer,
}

// Server is quarry.v1.JobService over a Manager.
type Server struct {
	quarryv1.UnimplementedJobServiceServer
	M *Manager
}

var _ quarryv1.JobServiceServer = (*Server)(nil)

// grpcErr maps the manager's errors to status codes.
func grpcErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, ErrInvalid):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, ErrDenied):
		return status.Error(codes.PermissionDenied, err.Error())
	case errors.Is(err, ErrNoRigs), errors.Is(err, ErrState), errors.Is(err, ErrDisabled):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, ErrShutdown):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	}
	return status.Error(codes.Internal, err.Error())
}

func needID(id string) error {
	if id == "" {
		return status.Error(codes.InvalidArgument, "job_id is required")
	}
	return nil
}

// RunJob starts a job.
func (s *Server) RunJob(ctx context.Context, req *quarryv1.RunJobRequest) (*quarryv1.RunJobResponse, error) {
	if len(req.SpecYaml) == 0 {
		return nil, status.Error(codes.InvalidArgument, "spec_yaml is required")
	}
	id, err := s.M.Start(ctx, req.SpecYaml, api.CallerFrom(ctx))
	if err != nil {
		return nil, grpcErr(err)
	}
	j, err := s.M.Job(ctx, id)
	if err != nil {
		return nil, grpcErr(err)
	}
	return &quarryv1.RunJobResponse{Job: j}, nil
}

// ListJobs lists jobs, newest first.
func (s *Server) ListJobs(ctx context.Context, req *quarryv1.ListJobsRequest) (*quarryv1.ListJobsResponse, error) {
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
func (s *Server) GetJob(ctx context.Context, req *quarryv1.GetJobRequest) (*quarryv1.GetJobResponse, error) {
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
	if !api.SeesSecrets(ctx) {
		j.SpecYaml = string(redact.YAML([]byte(j.SpecYaml), "env"))
	}
}

// JobLogs returns the job's output.
func (s *Server) JobLogs(ctx context.Context, req *quarryv1.JobLogsRequest) (*quarryv1.JobLogsResponse, error) {
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
func (s *Server) CancelJob(ctx context.Context, req *quarryv1.CancelJobRequest) (*quarryv1.CancelJobResponse, error) {
	if err := needID(req.JobId); err != nil {
		return nil, err
	}
	if err := s.M.Cancel(ctx, req.JobId, api.CallerFrom(ctx)); err != nil {
		return nil, grpcErr(err)
	}
	j, err := s.M.Job(ctx, req.JobId)
	if err != nil {
		return nil, grpcErr(err)
	}
	return &quarryv1.CancelJobResponse{Job: j}, nil
}

// RevertJob undoes a finished job's edits.
func (s *Server) RevertJob(ctx context.Context, req *quarryv1.RevertJobRequest) (*quarryv1.RevertJobResponse, error) {
	if err := needID(req.JobId); err != nil {
		return nil, err
	}
	runs, err := s.M.Revert(ctx, req.JobId, api.CallerFrom(ctx))
	if err != nil {
		return nil, grpcErr(err)
	}
	return &quarryv1.RevertJobResponse{Runs: runs}, nil
}

// WatchJob streams progress until the job ends.
func (s *Server) WatchJob(req *quarryv1.WatchJobRequest, stream quarryv1.JobService_WatchJobServer) error {
	if err := needID(req.JobId); err != nil {
		return err
	}
	err := s.M.Watch(stream.Context(), req.JobId, func(e *quarryv1.JobEvent) error {
		return stream.Send(&quarryv1.WatchJobResponse{Event: e})
	})
	return grpcErr(err)
}
