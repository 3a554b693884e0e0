/* Links the iasl-compiled DSDT into padcell as padcell_dsdt_aml[]. */
	.section .rodata
	.balign 16
	.globl padcell_dsdt_aml
	.globl padcell_dsdt_aml_end
padcell_dsdt_aml:
	.incbin DSDT_AML
padcell_dsdt_aml_end:
	.section .note.GNU-stack,"",@progbits
