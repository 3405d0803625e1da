/*
 * slurm_cli.h - stasis slurm (cmd_slurm.c): the checkpoints of Slurm jobs, and
 * the commands the SPANK plugin (src/slurm/spank_stasis.c) runs on the nodes.
 */
#ifndef STASIS_SLURM_CLI_H
#define STASIS_SLURM_CLI_H

int cmd_slurm(int argc, char **argv);

#endif
