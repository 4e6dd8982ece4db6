#!/usr/bin/env bash
# bench/plot.sh - charts of coil against its peers from one bench/run.
#
#   bench/plot.sh RESULTS OUTDIR
#
# RESULTS is a file of bench/run's "name value unit" lines (bench/run >
# results.txt; a part of a run will do). For each group below whose
# coil line is there, an SVG chart (640x400) is written into OUTDIR,
# which is made if missing: a clustered bar chart, coil's bar first and
# each peer's beside it, the value printed above each bar, and a footer
# naming RESULTS so that a chart can be traced to its data.
#
#   loop.svg         call_soon_chain, call_soon_batch, timers: coil,
#                    libuv_* and libev_*, ns per operation
#   timers_mem.svg   timers_mem, libuv_timers_mem, libev_timers_mem:
#                    bytes per timer
#   tasks.svg        task_switch against boost_context_switch,
#                    queue_pingpong against go_chan_pingpong, spawn:
#                    ns per hand-off or per task
#   servers_cpu.svg  echo_{coil,epoll,libuv}_{1k,10k,100k}_cpu and
#                    http_{coil,epoll,libuv}_cpu: server CPU time per
#                    request, in microseconds
#   servers_rps.svg  the same servers' *_rps lines: requests per second
#   idle.svg         idle_{coil,epoll,libuv}_rss_per_conn: bytes of
#                    server memory per idle connection
#
# Names are matched exactly, and only a line with the unit the chart
# expects is drawn. A peer's bar is drawn when its line is there; a
# category without coil's line is left out, and a group with none of
# coil's lines is skipped; both with a note on stderr. A name given
# more than once (a full bench/run prints the echo and http lines again
# for uring) is drawn with its first value. Each chart is written to a
# temporary file and moved into place once complete, so OUTDIR never
# holds half a chart. Needs gnuplot (Debian: gnuplot-nox). Exits 1 if
# gnuplot is missing, the arguments are wrong, no chart could be drawn
# or gnuplot failed on one (the others are still written).
set -euo pipefail
export LC_ALL=C # "." as the decimal sign, in awk and gnuplot alike

# shellcheck source=bench/cli.sh
. "$(dirname "${BASH_SOURCE[0]}")/cli.sh" # say, --help

if [ $# -ne 2 ]; then
    say "usage: bench/plot.sh RESULTS OUTDIR (--help for more)"
    exit 1
fi
results=$1
outdir=$2

if ! command -v gnuplot >/dev/null; then
    say "gnuplot not found: install it (Debian: apt-get install gnuplot-nox)"
    exit 1
fi
if [ ! -f "$results" ] || [ ! -r "$results" ]; then
    say "$results: not a readable file"
    exit 1
fi
if ! mkdir -p "$outdir"; then
    say "cannot make $outdir"
    exit 1
fi

# The implementations, in the order their bars and legend entries come;
# one colour each, the same in every chart.
impls=(coil epoll libuv libev boost go)
declare -A colour=(
    [coil]='#0072B2' [epoll]='#009E73' [libuv]='#E69F00'
    [libev]='#CC79A7' [boost]='#999999' [go]='#D55E00'
)
declare -A legend=(
    [coil]=coil [epoll]='raw epoll' [libuv]=libuv [libev]=libev
    [boost]=Boost.Context [go]=Go
)

# The results: value and unit by name, the first line of each name.
declare -A value unit
skipped=0
repeated=0
while read -r name val u _ || [ -n "${name:-}" ]; do
    [ -n "${name:-}" ] || continue
    case $name in \#*) continue ;; esac
    if ! [[ $name =~ ^[A-Za-z0-9_.-]+$ ]] ||
        ! [[ ${val:-} =~ ^[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$ ]] ||
        [ -z "${u:-}" ]; then
        skipped=$((skipped + 1))
        continue
    fi
    if [ -n "${value[$name]+set}" ]; then
        repeated=$((repeated + 1))
        continue
    fi
    value[$name]=$val
    unit[$name]=$u
done <"$results"
if [ "$skipped" -gt 0 ]; then
    say "$results: $skipped lines not of the form \"name value unit\" ignored"
fi
if [ "$repeated" -gt 0 ]; then
    say "$results: $repeated lines repeat an earlier name: the first value is drawn"
fi

tmp=$(mktemp -d)
partial= # the SVG being written, removed if we stop before moving it
# shellcheck disable=SC2317 # called from the trap
cleanup() {
    [ -z "$partial" ] || rm -f "$partial"
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A string for a gnuplot script, in single quotes (where '' is a quote).
gp_quote() { printf "'%s'" "${1//\'/\'\'}"; }

status=0
drawn=0

# chart FILE TITLE YLABEL UNIT DIVISOR CATEGORY...
#
# Writes OUTDIR/FILE. Each CATEGORY is "LABEL|IMPL=NAME IMPL=NAME ...",
# coil's first; LABEL may hold \n (a line break under the bar group).
# A bar is drawn for each NAME present with unit UNIT, its value divided
# by DIVISOR. False if gnuplot failed.
chart() {
    local file=$1 title=$2 ylabel=$3 want=$4 div=$5
    shift 5
    local spec label pairs pair impl name note ncat=0 rows='' xtics='' notes=''
    local -A used=()
    for spec in "$@"; do
        label=${spec%%|*}
        pairs=${spec#*|}
        local bars='' catrows=''
        for pair in $pairs; do
            impl=${pair%%=*}
            name=${pair#*=}
            [ -n "${value[$name]+set}" ] || continue
            if [ "${unit[$name]}" != "$want" ]; then
                say "$file: $name is in ${unit[$name]}, not $want: left out"
                continue
            fi
            bars+="$impl ${value[$name]}"$'\n'
            catrows+="$ncat $impl ${value[$name]}"$'\n'
        done
        case $bars in
        coil\ *) ;;
        *)
            name=${pairs%% *}
            name=${name#coil=}
            [ -n "${value[$name]+set}" ] ||
                notes+="no $name line: \"${label//\\n/ }\" left out"$'\n'
            continue
            ;;
        esac
        rows+=$catrows
        xtics+="${xtics:+, }\"$label\" $ncat"
        for pair in $pairs; do
            impl=${pair%%=*}
            [[ $'\n'$bars == *$'\n'"$impl "* ]] && used[$impl]=1
        done
        ncat=$((ncat + 1))
    done
    if [ "$ncat" -eq 0 ]; then
        say "$file: skipped (none of coil's lines in $results)"
        return 0
    fi
    while IFS= read -r note; do
        [ -z "$note" ] || say "$file: $note"
    done <<<"$notes"

    # Bars of a category side by side around its x, as wide as the
    # widest category allows; the datablocks, one per implementation and
    # one of the value labels; the y range with room for the labels.
    local data
    data=$(awk -v div="$div" '
        function fmt(v,   s, r) {
            if (v >= 100000) return sprintf("%.0fk", v / 1000)
            if (v >= 10000) return sprintf("%.1fk", v / 1000)
            if (v < 999.5) return sprintf("%.3g", v)
            s = sprintf("%.0f", v)
            r = ""
            while (length(s) > 3) {
                r = "," substr(s, length(s) - 2) r
                s = substr(s, 1, length(s) - 3)
            }
            return s r
        }
        NF == 3 { c[NR] = $1; im[NR] = $2; v[NR] = $3 / div; n[$1]++
                  if (n[$1] > most) most = n[$1]; if (v[NR] > top) top = v[NR] }
        END {
            w = 0.8 / (most < 2 ? 2 : most)
            for (i = 1; i <= NR; i++) {
                if (i == 1 || c[i] != c[i - 1]) j = 0
                x = c[i] + (j++ - (n[c[i]] - 1) / 2) * w
                blk[im[i]] = blk[im[i]] sprintf("%.4f %.6g\n", x, v[i])
                lab = lab sprintf("%.4f %.6g \"%s\"\n", x, v[i], fmt(v[i]))
            }
            printf "set boxwidth %.4f absolute\n", w * 0.92
            printf "set yrange [0:%.6g]\n", (top > 0 ? top * 1.14 : 1)
            if (top >= 20000) print "set format y \"%.0s%c\""
            for (k in blk) printf "$%s << EOD\n%sEOD\n", k, blk[k]
            printf "$labels << EOD\n%sEOD\n", lab
        }' <<<"${rows%$'\n'}")

    local plot=''
    for impl in "${impls[@]}"; do
        [ -n "${used[$impl]:-}" ] || continue
        plot+="\$$impl using 1:2 with boxes lc rgb '${colour[$impl]}' title '${legend[$impl]}', "
    done
    plot+="\$labels using 1:2:3 with labels offset 0,0.6 font ',10' tc rgb '#333333' notitle"

    if ! partial=$(mktemp "$outdir/.${file%.svg}.XXXXXX"); then
        partial=
        say "$file: cannot write in $outdir"
        return 1
    fi
    cat >"$tmp/chart.gp" <<EOF
set terminal svg size 640,400 font 'sans-serif,12' background rgb 'white' noenhanced
set encoding utf8
set output $(gp_quote "$partial")
set title "$title" font ',13' offset 0,0.6
set tmargin 4
set key at graph 0.5, graph 1.02 center bottom horizontal reverse Left samplen 1.5 width 1
set border 3 lc rgb '#555555'
set tics nomirror tc rgb '#333333'
set grid ytics lc rgb '#e0e0e0' lt 1
set xtics scale 0 ($xtics)
set xrange [-0.6:$ncat - 0.4]
set ylabel "$ylabel"
set style fill solid 1.0 noborder
set bmargin 4.5
set label 1 $(gp_quote "data: ${results##*/}") at screen 0.01, screen 0.03 left font ',9' tc rgb '#666666'
$data
plot $plot
EOF
    if ! gnuplot "$tmp/chart.gp" 2>"$tmp/gnuplot.err" ||
        [[ $(tail -c 16 "$partial") != *'</svg>'* ]]; then
        cat "$tmp/gnuplot.err" >&2
        say "$file: gnuplot failed; not written"
        rm -f "$partial"
        partial=
        return 1
    fi
    chmod 644 "$partial"
    mv -f "$partial" "$outdir/$file"
    partial=
    drawn=$((drawn + 1))
    say "$file: written"
}

loop=()
for b in call_soon_chain:'call_soon chain\nper hop' \
    call_soon_batch:'call_soon batch\nper callback' timers:'timers\nper timer'; do
    loop+=("${b#*:}|coil=${b%%:*} libuv=libuv_${b%%:*} libev=libev_${b%%:*}")
done
chart loop.svg \
    'Event loop: time per operation (lower is better)' \
    'ns per operation' ns/op 1 "${loop[@]}" || status=1

chart timers_mem.svg \
    'Timers: peak RSS growth per timer (lower is better)' \
    'bytes per timer' B/timer 1 \
    '1,000,000 timers, half cancelled|coil=timers_mem libuv=libuv_timers_mem libev=libev_timers_mem' ||
    status=1

chart tasks.svg \
    'Tasks: time per hand-off or per task spawned (lower is better)' \
    'ns per operation' ns/op 1 \
    'task hand-off\n(vs a raw switch)|coil=task_switch boost=boost_context_switch' \
    'queue hand-off\n(vs a Go channel)|coil=queue_pingpong go=go_chan_pingpong' \
    'spawn + finish\nper task|coil=spawn' || status=1

cpu=() rps=()
for s in 1k:'1 KiB' 10k:'10 KiB' 100k:'100 KiB'; do
    size=${s%%:*}
    cpu+=("echo ${s#*:}|coil=echo_coil_${size}_cpu epoll=echo_epoll_${size}_cpu libuv=echo_libuv_${size}_cpu")
    rps+=("echo ${s#*:}|coil=echo_coil_${size}_rps epoll=echo_epoll_${size}_rps libuv=echo_libuv_${size}_rps")
done
cpu+=("HTTP hello|coil=http_coil_cpu epoll=http_epoll_cpu libuv=http_libuv_cpu")
rps+=("HTTP hello|coil=http_coil_rps epoll=http_epoll_rps libuv=http_libuv_rps")
chart servers_cpu.svg \
    'Servers: CPU time (user + system) per request (lower is better)' \
    'µs of server CPU per request' ns/req 1000 "${cpu[@]}" || status=1
chart servers_rps.svg \
    'Servers: requests per second (higher is better)' \
    'requests per second' req/s 1 "${rps[@]}" || status=1

chart idle.svg \
    'Idle connections: server RSS growth per connection (lower is better)' \
    'bytes of RSS per idle connection' bytes 1 \
    'one idle TCP connection|coil=idle_coil_rss_per_conn epoll=idle_epoll_rss_per_conn libuv=idle_libuv_rss_per_conn' ||
    status=1

if [ "$drawn" -eq 0 ] && [ "$status" -eq 0 ]; then
    say "no chart drawn: none of the charted lines is in $results"
    exit 1
fi
exit "$status"
