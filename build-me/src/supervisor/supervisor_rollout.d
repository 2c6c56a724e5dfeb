build-me/src/supervisor/supervisor_rollout.o: \
 src/supervisor/supervisor_rollout.c src/core/banned.h src/compat/json.h \
 src/core/log.h src/core/strbuf.h src/core/timeutil.h src/core/util.h \
 src/spec/spec.h src/store/store.h src/supervisor/supervisor_internal.h \
 src/supervisor/supervisor.h src/supervisor/supervisor_cgroup.h
src/core/banned.h:
src/compat/json.h:
src/core/log.h:
src/core/strbuf.h:
src/core/timeutil.h:
src/core/util.h:
src/spec/spec.h:
src/store/store.h:
src/supervisor/supervisor_internal.h:
src/supervisor/supervisor.h:
src/supervisor/supervisor_cgroup.h:
