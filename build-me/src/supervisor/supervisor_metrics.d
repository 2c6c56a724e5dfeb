build-me/src/supervisor/supervisor_metrics.o: \
 src/supervisor/supervisor_metrics.c src/core/banned.h \
 src/supervisor/supervisor_metrics.h src/supervisor/supervisor_internal.h \
 src/core/strbuf.h src/supervisor/supervisor.h \
 src/supervisor/supervisor_cgroup.h src/spec/spec.h src/core/timeutil.h \
 src/core/util.h
src/core/banned.h:
src/supervisor/supervisor_metrics.h:
src/supervisor/supervisor_internal.h:
src/core/strbuf.h:
src/supervisor/supervisor.h:
src/supervisor/supervisor_cgroup.h:
src/spec/spec.h:
src/core/timeutil.h:
src/core/util.h:
