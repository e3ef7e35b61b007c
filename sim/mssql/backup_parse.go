package mssql

// stBackup is BACKUP DATABASE / BACKUP LOG.
type stBackup struct {
	Log  bool
	DB   expr // identifier (as a string literal) or variable
	Disk expr
	Opts backupOpts
}

// stRestore is RESTORE DATABASE / LOG / HEADERONLY / FILELISTONLY /
// VERIFYONLY.
type stRestore struct {
	Kind string // DATABASE, LOG, HEADERONLY, FILELISTONLY, VERIFYONLY
	DB   expr
	Disk expr // nil for RESTORE DATABASE x WITH RECOVERY
	Opts backupOpts
}

// backupOpts are the WITH options of BACKUP and RESTORE.
type backupOpts struct {
	Init, Format, CopyOnly, Checksum, Compression bool
	NoRecovery, Recovery, Replace                 bool
	Standby                                       expr
	Stats                                         int // 0 = no progress messages
	File                                          expr
	Moves                                         [][2]expr
	set                                           map[string]bool
}

func (p *parser) nameOrVar() expr {
	if t := p.peek(); t.Kind == tVar {
		p.i++
		return &exVar{Name: t.Text}
	}
	return &exLit{V: p.ident()}
}

func (p *parser) diskClause() expr {
	p.expectKw("DISK")
	p.expectOp("=")
	t := p.next()
	switch t.Kind {
	case tString:
		return &exLit{V: t.Text}
	case tVar:
		return &exVar{Name: t.Text}
	}
	p.fail(t)
	return nil
}

func (p *parser) backupStmt() stmt {
	p.expectKw("BACKUP")
	s := &stBackup{}
	switch {
	case p.acceptKw("DATABASE"):
	case p.acceptKw("LOG"):
		s.Log = true
	default:
		p.fail(p.peek())
	}
	s.DB = p.nameOrVar()
	p.expectKw("TO")
	s.Disk = p.diskClause()
	if p.isOp(",") {
		p.fail(p.peek()) // striped backups are not supported
	}
	s.Opts = p.backupOptions(false)
	return s
}

func (p *parser) restoreStmt() stmt {
	p.expectKw("RESTORE")
	s := &stRestore{Kind: p.word()}
	switch s.Kind {
	case "DATABASE", "LOG":
		s.DB = p.nameOrVar()
		if p.acceptKw("FROM") {
			s.Disk = p.diskClause()
		} else if s.Kind == "LOG" {
			p.fail(p.peek())
		}
	case "HEADERONLY", "FILELISTONLY", "VERIFYONLY", "LABELONLY":
		p.expectKw("FROM")
		s.Disk = p.diskClause()
	default:
		p.fail(p.toks[p.i-1])
	}
	if p.isOp(",") {
		p.fail(p.peek())
	}
	s.Opts = p.backupOptions(true)
	if s.Disk == nil && !s.Opts.Recovery && !s.Opts.NoRecovery && s.Opts.Standby == nil && len(s.Opts.set) > 0 {
		p.fail(p.peek())
	}
	return s
}

func (p *parser) backupOptions(restore bool) backupOpts {
	o := backupOpts{set: map[string]bool{}}
	if !p.acceptKw("WITH") {
		return o
	}
	for {
		w := p.word()
		o.set[w] = true
		switch w {
		case "INIT":
			o.Init = true
		case "FORMAT":
			o.Format, o.Init = true, true
		case "COPY_ONLY":
			o.CopyOnly = true
		case "CHECKSUM":
			o.Checksum = true
		case "COMPRESSION":
			o.Compression = true
		case "NORECOVERY":
			o.NoRecovery = true
		case "NOINIT", "NOFORMAT", "NO_CHECKSUM", "NO_COMPRESSION", "SKIP", "NOSKIP", "REWIND", "NOREWIND",
			"UNLOAD", "NOUNLOAD", "CONTINUE_AFTER_ERROR", "STOP_ON_ERROR", "NO_TRUNCATE", "KEEP_REPLICATION":
		case "STATS":
			o.Stats = 10
			if p.acceptOp("=") {
				o.Stats = p.intLit()
				if o.Stats <= 0 || o.Stats > 100 {
					o.Stats = 10
				}
			}
		case "NAME", "DESCRIPTION", "MEDIANAME", "MEDIADESCRIPTION":
			p.expectOp("=")
			p.primary()
		case "RECOVERY":
			if !restore {
				p.fail(p.toks[p.i-1])
			}
			o.Recovery = true
		case "REPLACE":
			if !restore {
				p.fail(p.toks[p.i-1])
			}
			o.Replace = true
		case "STANDBY":
			p.expectOp("=")
			o.Standby = p.primary()
		case "FILE":
			if !restore {
				p.fail(p.toks[p.i-1])
			}
			p.expectOp("=")
			o.File = p.primary()
		case "MOVE":
			if !restore {
				p.fail(p.toks[p.i-1])
			}
			from := p.primary()
			p.expectKw("TO")
			o.Moves = append(o.Moves, [2]expr{from, p.primary()})
		default:
			p.fail(p.toks[p.i-1])
		}
		if !p.acceptOp(",") {
			break
		}
	}
	n := 0
	for _, b := range []bool{o.NoRecovery, o.Recovery, o.Standby != nil} {
		if b {
			n++
		}
	}
	if n > 1 {
		p.fail(p.toks[p.i-1])
	}
	return o
}
