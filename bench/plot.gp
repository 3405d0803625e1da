# plot.gp - the benchmark's two figures, drawn from the .dat files bench.py
# writes into the results directory (gnuplot -e "outdir='DIR'; ref='2'; names='...'").
#   dump-by-size.png  dump and restore wall time against size (is it linear?)
#   reference.png     every system on the reference case: dump, frozen, restore
set terminal pngcairo size 1000,600 font ",10" noenhanced
set grid
set key top left

set output outdir."/dump-by-size.png"
set title "mixed workload: wall time vs size (median, min-max bars)"
set xlabel "workload size (GiB)"
set ylabel "seconds"
n = words(names)
set yrange [0:*]
set xrange [0:*]
plot for [i=1:n] outdir."/by-size.dat" index (i-1) using 1:2:3:4 with yerrorlines \
	lw 2 lc i title word(names, i)." dump", \
     for [i=1:n] outdir."/by-size.dat" index (i-1) using 1:5:6:7 with yerrorlines \
	dt 2 lc i title word(names, i)." restore"

set output outdir."/reference.png"
set title "mixed ".ref." GiB: every system (medians)"
set xlabel ""
set ylabel "seconds"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set xtics rotate by -40
set key top right
plot outdir."/reference.dat" using 2:xtic(1) title "dump wall", \
     "" using 3 title "frozen (CRIU)", \
     "" using 4 title "restore wall"
