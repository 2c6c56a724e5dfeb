build-me-asan/src/supervisor/supervisor_cgroup.o: \
 src/supervisor/supervisor_cgroup.c src/core/banned.h \
 src/supervisor/supervisor_cgroup.h src/core/log.h src/core/strbuf.h \
 src/core/util.h
src/core/banned.h:
src/supervisor/supervisor_cgroup.h:
src/core/log.h:
src/core/strbuf.h:
src/core/util.h:
