package mssql_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chatdr/chatdr/pluginsdk"
)

// BenchmarkCopyPending compares ls.copy_pending (temporary name, fsync,
// size check, rename, RESTORE HEADERONLY of each file) with cp of the same
// log backups, and reports the throughput ratio (target ≥ 0.9). Files: 8 log
// backups of about 4 MB each, made by the SQL Server simulator.
func BenchmarkCopyPending(b *testing.B) {
	root := b.TempDir()
	share, dest, cpDest := filepath.Join(root, "share"), filepath.Join(root, "copy"), filepath.Join(root, "cp")
	for _, d := range []string{share, dest, cpDest} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	s := startServer(b, "SQL1", root)
	s.exec(b, "CREATE DATABASE mgc")
	s.exec(b, "CREATE TABLE mgc.dbo.messages (id bigint IDENTITY(1,1), room nvarchar(100), sender nvarchar(100), body nvarchar(max))")
	s.exec(b, "BACKUP DATABASE mgc TO DISK = @p1 WITH INIT", filepath.Join(root, "full.bak"))
	body := strings.Repeat("x", 2*1024*1024) // 4 MB in UTF-16
	var total int64
	base := time.Date(2026, 11, 29, 4, 0, 0, 0, time.UTC)
	for i := 0; i < 8; i++ {
		for j := 0; j < 4; j++ {
			s.exec(b, "INSERT INTO mgc.dbo.messages (room, sender, body) VALUES ('r', 's', @p1)", body)
		}
		f := filepath.Join(share, "mgc_"+base.Add(time.Duration(i)*time.Minute).Format("20060102150405")+".trn")
		s.exec(b, "BACKUP LOG mgc TO DISK = @p1 WITH INIT", f)
		fi, err := os.Stat(f)
		if err != nil {
			b.Fatal(err)
		}
		total += fi.Size()
	}
	var plugin, noVerify, cp, cpSync time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		os.RemoveAll(dest)
		os.RemoveAll(cpDest)
		os.MkdirAll(cpDest, 0o755)
		start := time.Now()
		out, err := s.plugin.Execute(context.Background(), &pluginsdk.Request{Action: "mssql.ls.copy_pending",
			Params: pluginsdk.Params{"database": "mgc", "source_dir": share, "dest_dir": dest}, IdempotencyKey: fmt.Sprint(i)}, &recorder{})
		plugin += time.Since(start)
		if err != nil || len(out["copied"].([]any)) != 8 {
			b.Fatalf("copy_pending: %v %v", err, out)
		}
		os.RemoveAll(dest)
		start = time.Now()
		out, err = s.plugin.Execute(context.Background(), &pluginsdk.Request{Action: "mssql.ls.copy_pending",
			Params: pluginsdk.Params{"database": "mgc", "source_dir": share, "dest_dir": dest, "verify": false}, IdempotencyKey: fmt.Sprint(i)}, &recorder{})
		noVerify += time.Since(start)
		if err != nil || len(out["copied"].([]any)) != 8 {
			b.Fatalf("copy_pending without verify: %v %v", err, out)
		}
		start = time.Now()
		args := []string{}
		matches, _ := filepath.Glob(filepath.Join(share, "*.trn"))
		args = append(args, matches...)
		args = append(args, cpDest)
		if out, err := exec.Command("cp", args...).CombinedOutput(); err != nil {
			b.Fatalf("cp: %v %s", err, out)
		}
		cp += time.Since(start)
		start = time.Now()
		if out, err := exec.Command("sync", "-f", cpDest).CombinedOutput(); err != nil {
			b.Fatalf("sync: %v %s", err, out)
		}
		cpSync += time.Since(start)
	}
	b.StopTimer()
	mb := float64(total) / (1 << 20)
	b.ReportMetric(mb*float64(b.N)/plugin.Seconds(), "plugin-MB/s")
	b.ReportMetric(mb*float64(b.N)/noVerify.Seconds(), "plugin-noverify-MB/s")
	b.ReportMetric(mb*float64(b.N)/cp.Seconds(), "cp-MB/s")
	b.ReportMetric(cp.Seconds()/plugin.Seconds(), "ratio-vs-cp")
	b.ReportMetric((cp+cpSync).Seconds()/plugin.Seconds(), "ratio-vs-cp+sync")
	b.ReportMetric((cp+cpSync).Seconds()/noVerify.Seconds(), "noverify-ratio-vs-cp+sync")
	b.ReportMetric(mb, "MB")
}
